package admincli

import (
	"errors"
	"strconv"
	"strings"
)

// optionalValue lists the types an optional flag holds.
type optionalValue interface {
	string | bool | int | int64 | float64 | []string | map[string]string
}

// optional is a flag that knows whether it was given, for commands in which an absent flag
// means "leave it as it is" (v is then the zero value). A []string is a comma-separated list
// that may also be repeated ("-" alone clears it); a map[string]string is a repeated FROM=TO
// ("-" alone gives an empty map).
type optional[T optionalValue] struct {
	v   T
	set bool
}

// Set implements flag.Value.
func (o *optional[T]) Set(s string) error {
	v, err := parseOptional(o.v, s)
	if err != nil {
		return err
	}
	o.v, o.set = v, true
	return nil
}

// String implements flag.Value: the value given, "" when none was.
func (o *optional[T]) String() string {
	if o == nil || !o.set {
		return ""
	}
	switch v := any(o.v).(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []string:
		return strings.Join(v, ",")
	}
	return ""
}

// IsBoolFlag lets a bool be given as a bare --flag (flag's boolFlag).
func (o *optional[T]) IsBoolFlag() bool {
	_, ok := any(o.v).(bool)
	return ok
}

// ptr is the value given, or nil when none was; a list given empty is an empty list, not nil.
func (o *optional[T]) ptr() *T {
	if !o.set {
		return nil
	}
	v := o.v
	if l, ok := any(v).([]string); ok && l == nil {
		v = any([]string{}).(T)
	}
	return &v
}

// parseOptional parses s as a T; old is the value so far, which lists and maps add to.
func parseOptional[T optionalValue](old T, s string) (T, error) {
	var v any
	var err error
	switch old := any(old).(type) {
	case string:
		v = s
	case bool:
		if v, err = strconv.ParseBool(s); err != nil {
			err = errors.New("must be true or false")
		}
	case int:
		if v, err = strconv.Atoi(s); err != nil {
			err = errors.New("must be an integer")
		}
	case int64:
		if v, err = strconv.ParseInt(s, 10, 64); err != nil {
			err = errors.New("must be an integer")
		}
	case float64:
		if v, err = strconv.ParseFloat(s, 64); err != nil {
			err = errors.New("must be a number")
		}
	case []string:
		v = appendList(old, s)
	case map[string]string:
		v, err = putMapping(old, s)
	}
	if err != nil {
		return old, err
	}
	return v.(T), nil
}

// appendList adds the comma-separated values of s to list; "-" alone empties it.
func appendList(list []string, s string) []string {
	if s == "-" {
		return []string{}
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			list = append(list, v)
		}
	}
	return list
}

// putMapping adds FROM=TO to m (made when nil); "-" alone leaves it empty but given.
func putMapping(m map[string]string, s string) (map[string]string, error) {
	if m == nil {
		m = map[string]string{}
	}
	if s == "-" {
		return m, nil
	}
	from, to, ok := strings.Cut(s, "=")
	if !ok || from == "" || to == "" {
		return m, errors.New("must be FROM=TO")
	}
	m[from] = to
	return m, nil
}
