package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Environment variables that hold secrets of the relay's own and are not named elsewhere in
// this package: dev mode's upstream credential and the admin CLI's token.
const (
	EnvDevUpstreamKey = "ANTHROPIC_API_KEY"
	EnvAdminToken     = "CLAUDE_RELAY_TOKEN"
)

// relaySecretPrefix names a family of variables that are all the relay's own secrets.
const relaySecretPrefix = "CRS_SECURITY__"

// RelaySecretVariables lists the environment variables that hold the relay's own secrets,
// besides every variable whose name starts with CRS_SECURITY__. It is the one list of them:
// HCL's env() refuses to read any, because a configuration value is published to every
// sidecar, kept in Redis and on disk, and may be quoted to relay users (a model list in a
// 403, for one).
func RelaySecretVariables() []string {
	return []string{EnvRedisURL, EnvRedisPassword, EnvRedisSentinelPassword, EnvAdminPassword, EnvDevUpstreamKey, EnvAdminToken}
}

// IsRelaySecret reports whether the environment variable name holds one of the relay's own
// secrets (see RelaySecretVariables). Names are compared without regard to case, so that a
// spelling the operating system would treat as another variable is refused too.
func IsRelaySecret(name string) bool {
	n := strings.ToUpper(strings.TrimSpace(name))
	if strings.HasPrefix(n, relaySecretPrefix) {
		return true
	}
	for _, s := range RelaySecretVariables() {
		if n == s {
			return true
		}
	}
	return false
}

// relaySecretError is env()'s refusal of one of the relay's own secrets. It names the
// variable, never its value (which is not even read).
func relaySecretError(name string) error {
	return fmt.Errorf("%s holds one of the relay's own secrets, and configuration values are published to every sidecar and may be shown to relay users; the relay reads its secrets itself, so remove this env(%q) (env() refuses %s* and %s)",
		name, name, relaySecretPrefix, strings.Join(RelaySecretVariables(), ", "))
}

// Secret is the value of a secret field: a configuration attribute whose value must never
// leave the process that uses it (a webhook URL with a token in it, a signing secret). The
// operator writes it as env("NAME"), and only the variable's name is kept: snapshots sent
// to sidecars, API answers, diagnostics and logs carry "env:NAME" at most. The process that
// needs the value reads it from its own environment with Resolve, when it uses it.
//
// To add a secret field: declare the attribute as *hcl.Attribute in the HCL struct, decode
// it with builder.secret (which refuses literals, defaults and the relay's own secrets, and
// checks the variable is set), and give the snapshot type a Secret.
type Secret struct {
	// Env is the environment variable that holds the value.
	Env string `json:"env"`
}

// IsZero reports whether the field was left out.
func (s Secret) IsZero() bool { return s.Env == "" }

// String names the secret without its value.
func (s Secret) String() string {
	if s.Env == "" {
		return ""
	}
	return "env:" + s.Env
}

// Resolve reads the secret's value with lookup (normally os.LookupEnv, or Lookup over a
// .env file). An unset or empty variable is an error naming it.
func (s Secret) Resolve(lookup func(string) (string, bool)) (string, error) {
	if s.Env == "" {
		return "", nil
	}
	if IsRelaySecret(s.Env) {
		return "", relaySecretError(s.Env)
	}
	if v, ok := lookup(s.Env); ok && v != "" {
		return v, nil
	}
	return "", fmt.Errorf("secret environment variable %s is not set", s.Env)
}

// secret decodes a secret field, which must be written env("NAME"): a literal (or any other
// expression) would put the secret in the files, and a default would too. The variable
// must be set, so that a missing secret is reported at load time, at file:line:col; its
// value is looked up only to check that, and dropped. The source text of an attribute that
// is not an env() call is masked in every diagnostic printed (see Sources.mask).
func (b *builder) secret(info *blockInfo, attr *hcl.Attribute) Secret {
	if attr == nil {
		return Secret{}
	}
	call, ok := hcl.UnwrapExpression(attr.Expr).(*hclsyntax.FunctionCallExpr)
	name := ""
	if ok && call.Name == "env" && len(call.Args) == 1 {
		if v, diags := call.Args[0].Value(nil); !diags.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type().FriendlyName() == "string" {
			name = v.AsString()
		}
	}
	bad := func(summary, detail string) Secret {
		b.addBlockDiags(info, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: attr.Expr.Range().Ptr()}})
		return Secret{}
	}
	if name == "" {
		b.masked = append(b.masked, attr.Expr.Range())
		return bad("Secret written in the configuration",
			fmt.Sprintf("%s holds a secret, so it must be written env(\"NAME\") with the secret in that environment variable (no default): configuration files are copied, versioned and printed in diagnostics, and this value is not shown here.", attr.Name))
	}
	if IsRelaySecret(name) {
		return bad("Relay secret refused", "Call to function \"env\" failed: "+relaySecretError(name).Error()+".")
	}
	if v, ok := b.lookup(name); !ok || v == "" {
		return bad("Secret not set", fmt.Sprintf("%s reads environment variable %s, which is not set; set it where the control plane runs.", attr.Name, name))
	}
	return Secret{Env: name}
}

// envUse is one env() call in the files: where it is, what it read and what it returned.
type envUse struct {
	rng   hcl.Range
	name  string
	value string
}

// envUses finds every env() call in the files and evaluates it, so that diagnostics can hide
// what it returned.
func envUses(files []*hcl.File, ctx *hcl.EvalContext) []envUse {
	var uses []envUse
	for _, f := range files {
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok {
			continue
		}
		hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			call, ok := n.(*hclsyntax.FunctionCallExpr)
			if !ok || call.Name != "env" || len(call.Args) == 0 {
				return nil
			}
			v, diags := call.Value(ctx)
			if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type().FriendlyName() != "string" {
				return nil
			}
			u := envUse{rng: call.Range(), value: v.AsString()}
			if nv, d := call.Args[0].Value(ctx); !d.HasErrors() && nv.IsKnown() && !nv.IsNull() && nv.Type().FriendlyName() == "string" {
				u.name = nv.AsString()
			}
			uses = append(uses, u)
			return nil
		})
	}
	return uses
}

// redactEnv replaces, in every diagnostic, the values env() calls returned with a
// placeholder naming the variable: a value read from the environment is never printed,
// whatever later found it wrong. A diagnostic with a source range hides the values of the
// env() calls it overlaps; one without hides every value.
func redactEnv(diags hcl.Diagnostics, uses []envUse) {
	if len(uses) == 0 {
		return
	}
	for _, d := range diags {
		for _, u := range uses {
			if u.value == "" || !diagOverlaps(d, u.rng) {
				continue
			}
			repl := fmt.Sprintf("<value of env(%q)>", u.name)
			d.Summary = hideValue(d.Summary, u.value, repl)
			d.Detail = hideValue(d.Detail, u.value, repl)
		}
	}
}

func diagOverlaps(d *hcl.Diagnostic, rng hcl.Range) bool {
	if d.Subject == nil {
		return true
	}
	return d.Subject.Overlaps(rng) || (d.Context != nil && d.Context.Overlaps(rng))
}

// hideValue replaces value in s: quoted as %q prints it, escaped as it appears inside a
// longer quoted string, and bare where it stands as a whole word (so that a short value
// such as "1" does not eat the digits of other numbers).
func hideValue(s, value, repl string) string {
	quoted := strconv.Quote(value)
	s = strings.ReplaceAll(s, quoted, repl)
	s = replaceWord(s, quoted[1:len(quoted)-1], repl)
	return replaceWord(s, value, repl)
}

// replaceWord replaces the occurrences of old in s that are not part of a longer word.
func replaceWord(s, old, repl string) string {
	if old == "" || !strings.Contains(s, old) {
		return s
	}
	var out strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			out.WriteString(s)
			return out.String()
		}
		end := i + len(old)
		whole := (i == 0 || !isWordByte(s[i-1]) || !isWordByte(old[0])) &&
			(end == len(s) || !isWordByte(s[end]) || !isWordByte(old[len(old)-1]))
		out.WriteString(s[:i])
		if whole {
			out.WriteString(repl)
		} else {
			out.WriteString(old)
		}
		s = s[end:]
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
