package app

import (
	"fmt"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/console"
)

// mountConsole serves the web console under /ui/ on mux, in front of cp's admin API.
func mountConsole(mux *http.ServeMux, cp *controlplane.Server, log hclog.Logger) error {
	ui, err := console.New(console.Options{Admin: cp.Handler(), Logger: log})
	if err != nil {
		return fmt.Errorf("web console: %w", err)
	}
	mux.Handle("/ui/", ui.Handler())
	mux.Handle("/ui", ui.Handler())
	return nil
}
