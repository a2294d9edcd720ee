package config

import (
	_ "embed"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/gocty"
)

//go:embed default.hcl
var defaultHCL []byte

// DefaultFileName is the name diagnostics use for the embedded default.
const DefaultFileName = "default.hcl"

// Loader reads HCL configuration. The zero value is ready to use.
type Loader struct {
	// LookupEnv resolves the env() function; nil means os.LookupEnv. An
	// empty value counts as unset.
	LookupEnv func(string) (string, bool)
}

// Load parses and validates every *.hcl file in the directory path (in
// lexical order), or the single file path. It returns the snapshot (nil when
// there is any error), the sources for printing diagnostics, and every
// diagnostic found.
func Load(path string) (*Snapshot, *Sources, hcl.Diagnostics) {
	return Loader{}.Load(path)
}

// LoadFiles does what Load does from in-memory files, keyed by the name
// diagnostics should use. Files are merged in lexical order of their names.
func LoadFiles(files map[string][]byte) (*Snapshot, *Sources, hcl.Diagnostics) {
	return Loader{}.LoadFiles(files)
}

// Default returns the compiled embedded default configuration.
func Default() (*Snapshot, error) {
	l := Loader{LookupEnv: func(string) (string, bool) { return "", false }}
	snap, srcs, diags := l.load([]string{DefaultFileName}, map[string][]byte{DefaultFileName: defaultHCL}, false)
	if diags.HasErrors() {
		return nil, fmt.Errorf("embedded default configuration is invalid:\n%s", srcs.FormatDiagnostics(diags))
	}
	return snap, nil
}

// Load is the package-level Load with this loader's settings.
func (l Loader) Load(path string) (*Snapshot, *Sources, hcl.Diagnostics) {
	fail := func(summary string, err error) (*Snapshot, *Sources, hcl.Diagnostics) {
		return nil, &Sources{}, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: err.Error()}}
	}
	info, err := os.Stat(path)
	if err != nil {
		return fail("Cannot read configuration", err)
	}
	names := []string{path}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return fail("Cannot read configuration directory", err)
		}
		names = names[:0]
		for _, e := range entries { // ReadDir sorts by name
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, filepath.Join(path, e.Name()))
			}
		}
		if len(names) == 0 {
			return fail("No configuration files", fmt.Errorf("directory %s holds no *.hcl files", path))
		}
	}
	contents := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return fail("Cannot read configuration file", err)
		}
		contents[n] = b
	}
	return l.load(names, contents, true)
}

// LoadFiles is the package-level LoadFiles with this loader's settings.
func (l Loader) LoadFiles(files map[string][]byte) (*Snapshot, *Sources, hcl.Diagnostics) {
	names := slices.Sorted(maps.Keys(files))
	if len(names) == 0 {
		return nil, &Sources{}, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No configuration files", Detail: "No HCL files were given."}}
	}
	return l.load(names, files, true)
}

// load parses, decodes, merges and validates files in the given order. With
// inheritPricing, the operator's pricing blocks are merged over the embedded
// default's (see inheritPricing), so that an operator who only writes routes,
// or adds one price, still gets Anthropic's published prices.
func (l Loader) load(order []string, contents map[string][]byte, inheritPricing bool) (*Snapshot, *Sources, hcl.Diagnostics) {
	parser := hclparse.NewParser()
	srcs := &Sources{files: make(map[string]*hcl.File, len(order))}
	var diags hcl.Diagnostics
	var files []*hcl.File
	for _, name := range order {
		f, d := parser.ParseHCL(contents[name], name)
		diags = append(diags, d...)
		if f != nil {
			srcs.files[name] = f
			files = append(files, f)
		}
	}
	// A file that does not parse would only add noise (its blocks would be
	// missing, so references to them would look unknown): stop here.
	if diags.HasErrors() {
		return nil, srcs, sortDiagnostics(diags, order)
	}

	b := newBuilder(l.evalContext(), l.lookup())
	for _, f := range files {
		b.file(f)
	}
	if inheritPricing {
		b.inheritPricing()
	}
	if len(b.snap.Routes) == 0 {
		b.diags = append(b.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "No routes",
			Detail:   "No route block is declared, so the relay will answer every request with 404.",
		})
	}
	for _, p := range validate(b.snap) {
		b.report(p)
	}
	diags = sortDiagnostics(append(diags, b.diags...), order)
	redactEnv(diags, envUses(files, b.ctx))
	srcs.mask(b.masked)
	srcs.origins = b.origins
	if diags.HasErrors() {
		return nil, srcs, diags
	}
	return b.snap, srcs, diags
}

// lookup is LookupEnv, else os.LookupEnv.
func (l Loader) lookup() func(string) (string, bool) {
	if l.LookupEnv == nil {
		return os.LookupEnv
	}
	return l.LookupEnv
}

// evalContext offers the env() function to every expression.
func (l Loader) evalContext() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunction(l.lookup())}}
}

// envFunction implements env("NAME") and env("NAME", "default"). It refuses the relay's own
// secrets (IsRelaySecret) without reading them, and no error it returns holds a value.
func envFunction(lookup func(string) (string, bool)) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the value of an environment variable, or the default when it is unset or empty.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 2 {
				return cty.NilVal, function.NewArgErrorf(2, "env takes a name and at most one default")
			}
			name := args[0].AsString()
			if IsRelaySecret(name) {
				return cty.NilVal, function.NewArgError(0, relaySecretError(name))
			}
			if v, ok := lookup(name); ok && v != "" {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, fmt.Errorf("environment variable %s is not set; give a default with env(%q, \"...\")", name, name)
		},
	})
}

// blockKey identifies a block across all files.
type blockKey struct{ typ, label string }

// blockInfo is what the loader remembers about a block to turn a problem
// into a source range.
type blockInfo struct {
	body       hcl.Body
	defRange   hcl.Range
	labelRange hcl.Range // defRange for unlabelled blocks
	// broken holds the subjects of the errors decoding this block produced;
	// validation problems they explain are not reported twice.
	broken []hcl.Range
}

// builder merges decoded blocks into a Snapshot.
type builder struct {
	ctx    *hcl.EvalContext
	lookup func(string) (string, bool) // what env() reads
	snap   *Snapshot
	blocks map[blockKey]*blockInfo
	seen   map[string]bool // block types seen
	diags  hcl.Diagnostics
	// masked are the source ranges of secret fields written as literals: diagnostics print
	// them as asterisks.
	masked []hcl.Range
	// pricingDefaults is the pricing_defaults attribute, nil when no file sets it.
	pricingDefaults      *bool
	pricingDefaultsRange hcl.Range
	// origins says where each price row came from, by glob ("" for the
	// fallback): "file:line" or OriginBuiltIn.
	origins map[string]string
}

func newBuilder(ctx *hcl.EvalContext, lookup func(string) (string, bool)) *builder {
	return &builder{
		ctx:    ctx,
		lookup: lookup,
		snap: &Snapshot{
			Server: Server{TrustedProxies: DefaultTrustedProxies(), MaxBodyBytes: DefaultMaxBodyBytes},
		},
		blocks:  make(map[blockKey]*blockInfo),
		seen:    make(map[string]bool),
		origins: make(map[string]string),
	}
}

func (b *builder) file(f *hcl.File) {
	content, diags := f.Body.Content(fileSchema())
	b.diags = append(b.diags, diags...)
	if attr, ok := content.Attributes[attrPricingDefaults]; ok {
		b.pricingDefaultsAttr(attr)
	}
	for _, blk := range content.Blocks {
		b.block(blk)
	}
}

func (b *builder) block(blk *hcl.Block) {
	label := ""
	info := &blockInfo{body: blk.Body, defRange: blk.DefRange, labelRange: blk.DefRange}
	if len(blk.Labels) > 0 {
		label = blk.Labels[0]
		info.labelRange = blk.LabelRanges[0]
	}
	key := blockKey{blk.Type, label}
	first, dup := b.blocks[key]
	if dup {
		b.diags = append(b.diags, duplicateDiag(blk, label, info.labelRange, first.defRange))
	} else {
		b.blocks[key] = info
	}
	b.seen[blk.Type] = true

	// A duplicate is still decoded, for its own errors, then dropped.
	switch blk.Type {
	case blockServer:
		var s serverHCL
		b.decode(blk, info, &s)
		if !dup {
			b.server(&s)
		}
	case blockAllowlist:
		var a allowlistHCL
		b.decode(blk, info, &a)
		if !dup {
			if b.snap.Allowlists == nil {
				b.snap.Allowlists = make(map[string]Allowlist)
			}
			b.snap.Allowlists[label] = Allowlist{CIDRs: canonicalPrefixes(a.CIDRs)}
		}
	case blockPolicy:
		var p policyHCL
		b.decode(blk, info, &p)
		if !dup {
			b.policy(label, info, &p)
		}
	case blockPool:
		var p poolHCL
		b.decode(blk, info, &p)
		if !dup {
			b.pool(label, info, &p)
		}
	case blockRoute:
		var r routeHCL
		b.decode(blk, info, &r)
		if !dup {
			b.route(label, info, &r)
		}
	case blockPricing:
		var p priceHCL
		b.decode(blk, info, &p)
		if !dup {
			b.snap.Pricing = append(b.snap.Pricing, p.price(label))
			b.origins[label] = origin(blk.DefRange)
		}
	case blockUsage:
		var u usageHCL
		b.decode(blk, info, &u)
		if !dup {
			b.snap.Usage = &Usage{HourlyRetention: deref(u.HourlyRetention), DailyRetention: deref(u.DailyRetention),
				LedgerRetention: deref(u.LedgerRetention)}
			setIf(&b.snap.Usage.Ledger, u.Ledger)
			setIf(&b.snap.Usage.LedgerMaxRecordsPerDay, u.LedgerMaxPerDay)
		}
	case blockPricingFallback:
		var p priceHCL
		b.decode(blk, info, &p)
		if !dup {
			b.snap.Fallback = p.price("")
			b.origins[""] = origin(blk.DefRange)
		}
	case blockAlert:
		var a alertHCL
		b.decode(blk, info, &a)
		if !dup {
			b.alert(label, info, &a)
		}
	}
}

// pricingDefaultsAttr decodes pricing_defaults = true|false; it may be set
// in one file only.
func (b *builder) pricingDefaultsAttr(attr *hcl.Attribute) {
	if b.pricingDefaults != nil {
		first := b.pricingDefaultsRange
		b.diags = append(b.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Duplicate pricing_defaults",
			Detail:   fmt.Sprintf("pricing_defaults is already set at %s:%d:%d; set it once across all files.", first.Filename, first.Start.Line, first.Start.Column),
			Subject:  attr.NameRange.Ptr(),
		})
		return
	}
	var v bool
	diags := gohcl.DecodeExpression(attr.Expr, b.ctx, &v)
	b.diags = append(b.diags, diags...)
	if diags.HasErrors() {
		return
	}
	b.pricingDefaults, b.pricingDefaultsRange = &v, attr.NameRange
}

// inheritPricing merges the embedded default's prices into the snapshot.
// Operator pricing blocks come first, in declaration order, and the built-in
// rows follow, less those whose glob an operator block repeats; since the
// first matching glob prices a model, an operator block wins over every
// built-in row for the models it matches. pricing_defaults = false keeps
// the operator's rows only. A configuration without pricing_fallback takes
// the built-in one either way.
func (b *builder) inheritPricing() {
	def, err := Default()
	if err != nil {
		b.diags = append(b.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid embedded default", Detail: err.Error()})
		return
	}
	if b.pricingDefaults == nil || *b.pricingDefaults {
		for _, p := range def.Pricing {
			if _, mine := b.origins[p.Model]; !mine {
				b.snap.Pricing = append(b.snap.Pricing, p)
				b.origins[p.Model] = OriginBuiltIn
			}
		}
	} else if len(b.snap.Pricing) == 0 {
		b.diags = append(b.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "No prices",
			Detail:   "pricing_defaults = false with no pricing block prices every model at pricing_fallback.",
			Subject:  b.pricingDefaultsRange.Ptr(),
		})
	}
	if !b.seen[blockPricingFallback] {
		b.snap.Fallback = def.Fallback
		b.origins[""] = OriginBuiltIn
	}
}

// origin names where a block was declared, as "file:line".
func origin(r hcl.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

// decode decodes a block body, recording its errors. A block that decodes
// with errors is still merged, so that references to it resolve and its
// other attributes are still checked.
func (b *builder) decode(blk *hcl.Block, info *blockInfo, v any) {
	b.addBlockDiags(info, gohcl.DecodeBody(blk.Body, b.ctx, v))
}

// addBlockDiags records diagnostics about a block. An error overlapping an
// earlier one is a consequence of it (a failed env() call is followed by
// "value must be known") and is dropped.
func (b *builder) addBlockDiags(info *blockInfo, diags hcl.Diagnostics) {
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			b.diags = append(b.diags, d)
			continue
		}
		subject := info.defRange
		setIf(&subject, d.Subject)
		span := subject // gohcl puts the whole expression in Context
		setIf(&span, d.Context)
		if slices.ContainsFunc(info.broken, span.Overlaps) {
			continue
		}
		info.broken = append(info.broken, subject)
		b.diags = append(b.diags, d)
	}
}

func duplicateDiag(blk *hcl.Block, label string, subject, first hcl.Range) *hcl.Diagnostic {
	what := fmt.Sprintf("A %s block", blk.Type)
	if len(blk.Labels) > 0 {
		what = fmt.Sprintf("A %s block labelled %q", blk.Type, label)
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Duplicate %s block", blk.Type),
		Detail:   fmt.Sprintf("%s is already declared at %s:%d:%d; each may appear once across all files.", what, first.Filename, first.Start.Line, first.Start.Column),
		Subject:  subject.Ptr(),
	}
}

func (b *builder) server(s *serverHCL) {
	if s.TrustedProxies != nil {
		b.snap.Server.TrustedProxies = canonicalPrefixes(*s.TrustedProxies)
	}
	setIf(&b.snap.Server.MaxBodyBytes, s.MaxBodyBytes)
	setIf(&b.snap.Server.ResponseHeaders, s.ResponseHeaders)
}

func (b *builder) policy(name string, info *blockInfo, p *policyHCL) {
	pol := Policy{
		LimitMode:      deref(p.LimitMode),
		QueueTimeout:   deref(p.QueueTimeout),
		QueueMax:       deref(p.QueueMax),
		QueueKeepalive: deref(p.QueueKeepalive),
	}
	for i := range limitTable {
		limitTable[i].copyHCL(&pol, p)
	}
	if p.LimitModes != nil && len(*p.LimitModes) > 0 {
		pol.LimitModes = maps.Clone(*p.LimitModes)
	}
	if p.DeniedModels != nil {
		pol.DeniedModels = slices.Clone(*p.DeniedModels)
	}
	if p.Clients != nil {
		if len(*p.Clients) == 0 {
			b.attrError(info, "clients", "Empty client list", "clients = [] would allow no client at all; list client patterns, or remove the attribute to allow any client.")
		}
		pol.Clients = slices.Clone(*p.Clients)
	}
	if p.Models != nil {
		if len(*p.Models) == 0 {
			b.attrError(info, "models", "Empty model list", "models = [] would allow no model at all; list model globs, or remove the attribute to allow any model.")
		}
		pol.Models = slices.Clone(*p.Models)
	}
	if b.snap.Policies == nil {
		b.snap.Policies = make(map[string]Policy)
	}
	b.snap.Policies[name] = pol
}

func (b *builder) pool(name string, info *blockInfo, p *poolHCL) {
	pool := Pool{
		Strategy:            DefaultStrategy,
		FailoverMaxAttempts: DefaultFailoverMaxAttempts,
		FailoverOn:          DefaultFailoverOn(),
		ParkOn429:           DefaultParkOn429,
		Park429For:          DefaultPark429For,
		StickyTTL:           DefaultStickyTTL,
		Park529For:          DefaultPark529For,
		Park5xxAfter:        DefaultPark5xxAfter,
		Park5xxWindow:       DefaultPark5xxWindow,
		Park5xxFor:          DefaultPark5xxFor,
	}
	setIf(&pool.Park529For, p.Park529For)
	setIf(&pool.Park5xxAfter, p.Park5xxAfter)
	setIf(&pool.Park5xxWindow, p.Park5xxWindow)
	setIf(&pool.Park5xxFor, p.Park5xxFor)
	setIf(&pool.Strategy, p.Strategy)
	setIf(&pool.StopAtUtilization, p.StopAtUtilization)
	setIf(&pool.StickyWait, p.StickyWait)
	setIf(&pool.ParkOn429, p.ParkOn429)
	setIf(&pool.Park429For, p.Park429For)
	setIf(&pool.StickyTTL, p.StickyTTL)
	if p.Failover != nil {
		f, diags := decodeFailover(p.Failover, b.ctx)
		b.addBlockDiags(info, diags)
		setIf(&pool.FailoverMaxAttempts, f.MaxAttempts)
		setIf(&pool.FailoverOn, f.On)
	}
	if b.snap.Pools == nil {
		b.snap.Pools = make(map[string]Pool)
	}
	b.snap.Pools[name] = pool
}

// failoverHCL is the decoded failover object attribute.
type failoverHCL struct {
	MaxAttempts *int
	On          *[]int
}

// decodeFailover decodes failover = { max_attempts = N, on = [codes] }.
func decodeFailover(attr *hcl.Attribute, ctx *hcl.EvalContext) (failoverHCL, hcl.Diagnostics) {
	var f failoverHCL
	val, diags := attr.Expr.Value(ctx)
	if diags.HasErrors() || val.IsNull() {
		return f, diags
	}
	ty := val.Type()
	if !ty.IsObjectType() && !ty.IsMapType() {
		return f, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid failover",
			Detail:   "failover must be an object such as { max_attempts = 3, on = [429, 529, 500, 502, 503, 504] }.",
			Subject:  attr.Expr.Range().Ptr(),
		})
	}
	for key, v := range val.AsValueMap() {
		subject := objectItemRange(attr.Expr, key)
		bad := func(detail string) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid failover", Detail: detail, Subject: subject.Ptr()})
		}
		switch key {
		case "max_attempts":
			var n int
			if err := fromCty(v, cty.Number, &n); err != nil {
				bad(fmt.Sprintf("failover.max_attempts must be a whole number: %s.", err))
				continue
			}
			f.MaxAttempts = &n
		case "on":
			var codes []int
			if err := fromCty(v, cty.List(cty.Number), &codes); err != nil {
				bad(fmt.Sprintf("failover.on must be a list of HTTP statuses: %s.", err))
				continue
			}
			f.On = &codes
		default:
			bad(fmt.Sprintf("failover has no key %q; it takes max_attempts and on.", key))
		}
	}
	// AsValueMap's order is random; keep diagnostics stable.
	sort.SliceStable(diags, func(i, j int) bool { return rangeLess(diags[i].Subject, diags[j].Subject) })
	return f, diags
}

func fromCty(v cty.Value, ty cty.Type, dst any) error {
	cv, err := convert.Convert(v, ty)
	if err != nil {
		return err
	}
	if err := gocty.FromCtyValue(cv, dst); err != nil {
		return err
	}
	return nil
}

func (b *builder) route(name string, info *blockInfo, r *routeHCL) {
	rt := Route{
		Name:      name,
		Paths:     r.Paths,
		Pool:      r.Pool,
		Allowlist: deref(r.Allowlist),
		Policy:    deref(r.Policy),
		Timeout:   deref(r.Timeout),
	}
	if r.Methods != nil {
		if len(*r.Methods) == 0 {
			b.attrError(info, "methods", "Empty method list", "methods = [] would allow no method at all; list methods such as \"POST\", or remove the attribute to allow any method.")
		}
		for _, m := range *r.Methods {
			rt.Methods = append(rt.Methods, strings.ToUpper(m))
		}
	}
	b.snap.Routes = append(b.snap.Routes, rt)
}

func (b *builder) attrError(info *blockInfo, attr, summary, detail string) {
	rng := info.rangeOf(attr, -1)
	b.addBlockDiags(info, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: &rng}})
}

// report turns a validation problem into a diagnostic, unless a decoding
// error in the same place already explains it.
func (b *builder) report(p problem) {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: p.summary, Detail: p.detail}
	info, ok := b.blocks[blockKey{p.at.block, p.at.label}]
	if !ok {
		b.diags = append(b.diags, d)
		return
	}
	rng, present := info.locate(p.at)
	if len(info.broken) > 0 {
		if !present {
			return // a missing or undecodable attribute, already reported
		}
		for _, br := range info.broken {
			if br.Overlaps(rng) {
				return
			}
		}
	}
	d.Subject = &rng
	b.diags = append(b.diags, d)
}

func (i *blockInfo) rangeOf(attr string, index int) hcl.Range {
	rng, _ := i.locate(location{attr: attr, index: index})
	return rng
}

// locate finds the source range of a location within this block: the label,
// an attribute's value, a key of an object attribute, or a list element,
// falling back to the enclosing range it can find. present is false when
// the attribute is not written at all (its value came from a default).
func (i *blockInfo) locate(l location) (rng hcl.Range, present bool) {
	if l.attr == "" {
		return i.labelRange, true
	}
	body, ok := i.body.(*hclsyntax.Body)
	if !ok {
		return i.defRange, false
	}
	name, key, _ := strings.Cut(l.attr, ".")
	attr, ok := body.Attributes[name]
	if !ok {
		return i.defRange, false
	}
	var expr hcl.Expression = attr.Expr
	if key != "" {
		item := objectItem(expr, key)
		if item == nil {
			// The key is not written: its default is at fault.
			return expr.Range(), false
		}
		expr = item
	}
	if tuple, ok := hcl.UnwrapExpression(expr).(*hclsyntax.TupleConsExpr); ok && l.index >= 0 && l.index < len(tuple.Exprs) {
		return tuple.Exprs[l.index].Range(), true
	}
	return expr.Range(), true
}

// objectItem returns the value expression of key in an object constructor,
// or nil.
func objectItem(expr hcl.Expression, key string) hcl.Expression {
	obj, ok := hcl.UnwrapExpression(expr).(*hclsyntax.ObjectConsExpr)
	if !ok {
		return nil
	}
	for _, item := range obj.Items {
		k := hcl.ExprAsKeyword(item.KeyExpr)
		if k == "" {
			if v, diags := item.KeyExpr.Value(nil); !diags.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
				k = v.AsString()
			}
		}
		if k == key {
			return item.ValueExpr
		}
	}
	return nil
}

func objectItemRange(expr hcl.Expression, key string) hcl.Range {
	if item := objectItem(expr, key); item != nil {
		return item.Range()
	}
	return expr.Range()
}

// canonicalPrefixes canonicalises the entries that parse and keeps the
// others as written, for validation to report. An empty list becomes nil.
func canonicalPrefixes(in []string) []string {
	var out []string
	for _, s := range in {
		if p, err := ParsePrefix(s); err == nil {
			s = p.String()
		}
		out = append(out, s)
	}
	return out
}

// sortDiagnostics orders diagnostics by file (in load order) and position;
// diagnostics without a subject come first.
func sortDiagnostics(diags hcl.Diagnostics, order []string) hcl.Diagnostics {
	fileIdx := make(map[string]int, len(order))
	for i, n := range order {
		fileIdx[n] = i
	}
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		if a == nil || b == nil {
			return a == nil && b != nil
		}
		if a.Filename != b.Filename {
			return fileIdx[a.Filename] < fileIdx[b.Filename]
		}
		return a.Start.Byte < b.Start.Byte
	})
	return diags
}

func rangeLess(a, b *hcl.Range) bool {
	if a == nil || b == nil {
		return a == nil && b != nil
	}
	if a.Filename != b.Filename {
		return a.Filename < b.Filename
	}
	return a.Start.Byte < b.Start.Byte
}
