package logging

// Redaction scans text once, left to right. Each byte that can start (or, for
// key=value fields, separate) a secret is a trigger; only at a trigger does a
// matcher look further. Text without a match is returned untouched and
// nothing is allocated.

// kind says how a matched span is replaced.
type kind uint8

const (
	kindRedacted     kind = iota + 1 // "[redacted]"
	kindRelayKey                     // cr_ab12…ef90
	kindAnthropicKey                 // sk-ant-…WXYZ
	kindJWT                          // [jwt]
)

const (
	redacted       = "[redacted]"
	relayKeyPrefix = "cr_"
	// relayKeyMinHex is the shortest hex run after cr_ treated as a relay key;
	// issued keys have 64, shorter runs are ordinary identifiers.
	relayKeyMinHex     = 32
	anthropicKeyPrefix = "sk-ant-"
	anthropicKeyMinLen = 8 // characters after sk-ant-
)

// secretFields are key names (matched case-insensitively as the end of a key,
// so client_secret and REDIS_PASSWORD count) whose values are always masked in
// key=value, key: value and "key":"value" text. Each must end in d, t, y or n
// (matchField's quick filter; TestSecretFieldsPassQuickFilter guards it).
var secretFields = [...]string{
	"password", "passwd", "secret", "api_key", "api-key", "apikey",
	"access_token", "refresh_token", "id_token", "session_token", "auth_token",
	"authorization", "private_key", "encryption_key",
}

// Redact returns s with secrets masked: relay keys (cr_ plus 64 hex) become a
// hint "cr_ab12…ef90", Anthropic keys "sk-ant-…WXYZ" (last four kept),
// "Bearer <token>" "Bearer [redacted]", JWTs "[jwt]", passwords in URLs
// "[redacted]", and the values of secret fields (password, secret, api_key,
// access_token, refresh_token, authorization, …) "[redacted]". It returns s
// itself, without allocating, when nothing matches.
func Redact(s string) string {
	out, changed := redact(s)
	if !changed {
		return s
	}
	return string(out)
}

// RedactBytes is Redact for a byte slice. It returns b itself when nothing
// matches and a new slice otherwise; b is never modified.
func RedactBytes(b []byte) []byte {
	out, changed := redact(b)
	if !changed {
		return b
	}
	return out
}

func redact[T ~string | ~[]byte](s T) ([]byte, bool) {
	start, end, k := nextSecret(s, 0)
	if start < 0 {
		return nil, false
	}
	out := make([]byte, 0, len(s)+16)
	last := 0
	for start >= 0 {
		out = append(out, s[last:start]...)
		out = appendReplacement(out, s[start:end], k)
		last = end
		start, end, k = nextSecret(s, end)
	}
	return append(out, s[last:]...), true
}

func appendReplacement[T ~string | ~[]byte](out []byte, secret T, k kind) []byte {
	switch k {
	case kindRelayKey:
		hex := secret[len(relayKeyPrefix):]
		out = append(out, relayKeyPrefix...)
		out = append(out, hex[:4]...)
		out = append(out, "…"...)
		return append(out, hex[len(hex)-4:]...)
	case kindAnthropicKey:
		out = append(out, anthropicKeyPrefix+"…"...)
		return append(out, secret[len(secret)-4:]...)
	case kindJWT:
		return append(out, "[jwt]"...)
	}
	return append(out, redacted...)
}

// nextSecret returns the first secret span at or after from, or -1.
func nextSecret[T ~string | ~[]byte](s T, from int) (start, end int, k kind) {
	for i := from; i < len(s); i++ {
		switch s[i] {
		// The cheap second-byte checks keep ordinary words off the slow path.
		case 'c':
			if i+1 < len(s) && s[i+1] != 'r' {
				continue
			}
			if e := matchRelayKey(s, i); e > 0 {
				return i, e, kindRelayKey
			}
		case 's':
			if i+1 < len(s) && s[i+1] != 'k' {
				continue
			}
			if e := matchAnthropicKey(s, i); e > 0 {
				return i, e, kindAnthropicKey
			}
		case 'e':
			if i+1 < len(s) && s[i+1] != 'y' {
				continue
			}
			if e := matchJWT(s, i); e > 0 {
				return i, e, kindJWT
			}
		case 'b', 'B':
			if i+1 < len(s) && s[i+1]|0x20 != 'e' {
				continue
			}
			if a, e := matchBearer(s, i); e > 0 {
				return a, e, kindRedacted
			}
		case '=', ':':
			if a, e, fk := matchField(s, i); e > 0 {
				return a, e, fk
			}
			if a, e := matchURLPassword(s, i); e > 0 {
				return a, e, kindRedacted
			}
		}
	}
	return -1, -1, 0
}

// matchRelayKey matches cr_ followed by at least relayKeyMinHex hex digits.
func matchRelayKey[T ~string | ~[]byte](s T, i int) int {
	if !hasPrefixAt(s, i, relayKeyPrefix) {
		return 0
	}
	j := i + len(relayKeyPrefix)
	for j < len(s) && isHex(s[j]) {
		j++
	}
	if j-i-len(relayKeyPrefix) < relayKeyMinHex {
		return 0
	}
	return j
}

// matchAnthropicKey matches sk-ant- followed by at least anthropicKeyMinLen key characters.
func matchAnthropicKey[T ~string | ~[]byte](s T, i int) int {
	if !hasPrefixAt(s, i, anthropicKeyPrefix) {
		return 0
	}
	j := i + len(anthropicKeyPrefix)
	for j < len(s) && (isAlnum(s[j]) || s[j] == '-' || s[j] == '_') {
		j++
	}
	if j-i-len(anthropicKeyPrefix) < anthropicKeyMinLen {
		return 0
	}
	return j
}

// matchJWT matches eyJ<header>.<payload>.<signature> in base64url.
func matchJWT[T ~string | ~[]byte](s T, i int) int {
	if !hasPrefixAt(s, i, "eyJ") {
		return 0
	}
	j := skipBase64URL(s, i)
	if j-i < 10 || j >= len(s) || s[j] != '.' {
		return 0
	}
	k := skipBase64URL(s, j+1)
	if k-j-1 < 2 || k >= len(s) || s[k] != '.' {
		return 0
	}
	return skipBase64URL(s, k+1) // the signature may be empty (alg "none")
}

// matchBearer matches the credential after "Bearer " (any case). Plain words
// ("a Bearer token.") are not credentials: the token must contain a
// non-letter or be at least 20 characters long.
func matchBearer[T ~string | ~[]byte](s T, i int) (start, end int) {
	const word = "bearer"
	if i > 0 && isAlnum(s[i-1]) || !hasPrefixFoldAt(s, i, word) {
		return 0, 0
	}
	j := i + len(word)
	if j >= len(s) || (s[j] != ' ' && s[j] != '\t') {
		return 0, 0
	}
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	e, ok := tokenEnd(s, j)
	if !ok {
		return 0, 0
	}
	return j, e
}

// tokenEnd returns the end of an RFC 6750 token68 at i when it looks like a
// credential (see matchBearer).
func tokenEnd[T ~string | ~[]byte](s T, i int) (int, bool) {
	e := i
	nonLetter := false
	for e < len(s) && isToken68(s[e]) {
		if !isLetter(s[e]) {
			nonLetter = true
		}
		e++
	}
	for e < len(s) && s[e] == '=' {
		e++
		nonLetter = true
	}
	trimmed := e
	for trimmed > i && s[trimmed-1] == '.' { // sentence punctuation, not token
		trimmed--
	}
	if trimmed == i {
		return 0, false
	}
	if trimmed != e {
		nonLetter = false
		for p := i; p < trimmed; p++ {
			if !isLetter(s[p]) {
				nonLetter = true
				break
			}
		}
	}
	return trimmed, nonLetter || trimmed-i >= 20
}

// matchField matches the value of a secret field; s[i] is '=' or ':'. A value
// that is itself a relay or Anthropic key keeps that key's hint instead.
func matchField[T ~string | ~[]byte](s T, i int) (start, end int, k kind) {
	j := i
	for j > 0 && s[j-1] == ' ' {
		j--
	}
	if j > 0 && (s[j-1] == '"' || s[j-1] == '\'') {
		j--
		if j > 0 && s[j-1] == '\\' { // "key" inside JSON-escaped text: \"key\":
			j--
		}
	}
	if j == 0 {
		return 0, 0, 0
	}
	switch s[j-1] | 0x20 { // last letter of every secret field name
	case 'd', 't', 'y', 'n':
	default:
		return 0, 0, 0
	}
	field := secretFieldBefore(s, j)
	if field == "" {
		return 0, 0, 0
	}
	v := i + 1
	// "key: value" and "key = value" may have spaces; hclog's "key= next=1" is an empty value.
	if s[i] == ':' || (i > 0 && s[i-1] == ' ') {
		for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
			v++
		}
	}
	if v >= len(s) {
		return 0, 0, 0
	}
	switch {
	case s[v] == '"' || s[v] == '\'':
		start, end = quotedValue(s, v+1, s[v], false)
	case s[v] == '\\' && v+1 < len(s) && s[v+1] == '"':
		start, end = quotedValue(s, v+2, '"', true)
	default:
		start = v
		end = v
		for end < len(s) && !isValueEnd(s[end]) {
			end++
		}
		if field == "authorization" {
			// "Authorization: Basic xyz": mask the credential, keep the scheme.
			if a, e, ok := afterScheme(s, start, end); ok {
				start, end = a, e
			}
		}
	}
	if end <= start || hasPrefixAt(s, start, redacted) {
		return 0, 0, 0
	}
	if e := matchRelayKey(s, start); e == end {
		return start, end, kindRelayKey
	}
	if e := matchAnthropicKey(s, start); e == end {
		return start, end, kindAnthropicKey
	}
	return start, end, kindRedacted
}

// secretFieldBefore returns the secret field name that s[:j] ends with, or "".
func secretFieldBefore[T ~string | ~[]byte](s T, j int) string {
	for _, f := range secretFields {
		if j >= len(f) && hasPrefixFoldAt(s, j-len(f), f) {
			return f
		}
	}
	return ""
}

// quotedValue returns the span inside a quoted value starting at i. With
// escaped, the closing quote is \" (a value inside JSON-escaped text).
func quotedValue[T ~string | ~[]byte](s T, i int, q byte, escaped bool) (start, end int) {
	e := i
	for e < len(s) && s[e] != '\n' {
		if escaped {
			if s[e] == '\\' && e+1 < len(s) && s[e+1] == q {
				return i, e
			}
		} else {
			if s[e] == '\\' {
				e += 2
				continue
			}
			if s[e] == q {
				return i, e
			}
		}
		e++
	}
	return i, min(e, len(s))
}

// afterScheme finds "<Scheme> <credential>" from v, where s[v:e] is the
// scheme word, and returns the credential span.
func afterScheme[T ~string | ~[]byte](s T, v, e int) (start, end int, ok bool) {
	for p := v; p < e; p++ {
		if !isLetter(s[p]) {
			return 0, 0, false
		}
	}
	a := e
	for a < len(s) && s[a] == ' ' {
		a++
	}
	if a == e || a >= len(s) {
		return 0, 0, false
	}
	b := a
	for b < len(s) && !isValueEnd(s[b]) {
		b++
	}
	return a, b, b > a
}

// matchURLPassword matches the password in scheme://user:password@host; s[i] is ':'.
func matchURLPassword[T ~string | ~[]byte](s T, i int) (start, end int) {
	if !hasPrefixAt(s, i, "://") {
		return 0, 0
	}
	a := i + 3
	e := a
	at := -1
	for e < len(s) {
		c := s[e]
		if c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c == '>' || c <= ' ' {
			break
		}
		if c == '@' {
			at = e
		}
		e++
	}
	if at < 0 {
		return 0, 0
	}
	for p := a; p < at; p++ {
		if s[p] == ':' {
			if p+1 < at {
				return p + 1, at
			}
			return 0, 0
		}
	}
	return 0, 0
}

func hasPrefixAt[T ~string | ~[]byte](s T, i int, prefix string) bool {
	if len(s)-i < len(prefix) {
		return false
	}
	for k := 0; k < len(prefix); k++ {
		if s[i+k] != prefix[k] {
			return false
		}
	}
	return true
}

// hasPrefixFoldAt is hasPrefixAt ignoring ASCII case; prefix must be lower case.
func hasPrefixFoldAt[T ~string | ~[]byte](s T, i int, prefix string) bool {
	if len(s)-i < len(prefix) {
		return false
	}
	for k := 0; k < len(prefix); k++ {
		c := s[i+k]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[k] {
			return false
		}
	}
	return true
}

func skipBase64URL[T ~string | ~[]byte](s T, i int) int {
	for i < len(s) && (isAlnum(s[i]) || s[i] == '-' || s[i] == '_') {
		i++
	}
	return i
}

func isValueEnd(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ';', '&', '}', ']', ')', '"', '\'':
		return true
	}
	return false
}

func isToken68(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

func isLetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isAlnum(c byte) bool  { return isLetter(c) || (c >= '0' && c <= '9') }
func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c|0x20) >= 'a' && (c|0x20) <= 'f'
}
