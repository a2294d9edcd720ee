package controlplane

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// everyOverride returns key limits that override every limit a key may, each to v, and
// the limits' admin API field names.
func everyOverride(t *testing.T, v string) (adminapi.KeyLimits, []string) {
	t.Helper()
	var k config.KeyLimits
	var fields []string
	for d := range config.Limits() {
		if !d.Overridable() {
			continue
		}
		if err := d.SetOverride(&k, v); err != nil {
			t.Fatal(err)
		}
		fields = append(fields, "limits."+d.Name)
	}
	return k, fields
}

func TestEveryKeyLimitOverrideIsStoredAndNoneMayBeNegative(t *testing.T) {
	h, token := loggedIn(t)

	neg, fields := everyOverride(t, "-1")
	wantFields(t, h.do("POST", "/admin/keys", token, adminapi.CreateKeyRequest{Name: "k", KeyRules: adminapi.KeyRules{Limits: &neg}}), fields...)

	pos, _ := everyOverride(t, "3")
	created := h.createKey(token, adminapi.CreateKeyRequest{Name: "k", KeyRules: adminapi.KeyRules{Limits: &pos}})
	if diff := cmp.Diff(&pos, created.Key.Limits); diff != "" {
		t.Errorf("created key's limits (-want +got):\n%s", diff)
	}
	path := "/admin/keys/" + created.Key.ID
	wantFields(t, h.do("PATCH", path, token, adminapi.UpdateKeyRequest{Limits: &neg}), fields...)

	r := h.do("GET", path, token, nil)
	got := wantDecoded[adminapi.KeyResponse](t, r, http.StatusOK)
	if diff := cmp.Diff(&pos, got.Key.Limits); diff != "" {
		t.Errorf("limits after a refused update (-want +got):\n%s", diff)
	}
}

func TestOpenAPIKeyLimitsDescribeEveryOverridableLimit(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas struct {
				KeyLimits struct {
					Properties map[string]struct {
						Type string `json:"type"`
					} `json:"properties"`
				} `json:"KeyLimits"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for name, p := range doc.Components.Schemas.KeyLimits.Properties {
		got[name] = p.Type
	}
	want := map[string]string{}
	for d := range config.Limits() {
		if d.Overridable() {
			want[d.Name] = "integer"
			if d.Float() {
				want[d.Name] = "number"
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("openapi.json KeyLimits properties (-table +document):\n%s", diff)
	}
}
