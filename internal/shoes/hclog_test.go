package shoes

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	a := newHCLogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l := a.Named("plugin").With("pid", 7)
	l.Error("plugin process exited", "error", "boom")
	l.Trace("noise")
	fmt.Fprint(l.StandardWriter(nil), "line one\nline ")
	w := a.StandardWriter(nil)
	fmt.Fprint(w, "a\nb")
	fmt.Fprint(w, "c\n")

	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="plugin process exited" plugin_level=error logger=plugin pid=7 error=boom`,
		`msg="line one"`,
		`msg=a `, `msg=bc `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "noise") {
		t.Errorf("trace logged:\n%s", out)
	}
	if a.GetLevel() != hclog.Debug {
		t.Errorf("level %v", a.GetLevel())
	}
	quiet := newHCLogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if quiet.IsDebug() || quiet.GetLevel() != hclog.Off {
		t.Errorf("an info logger should turn go-plugin's logs off")
	}
}
