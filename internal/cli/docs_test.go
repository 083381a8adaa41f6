package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The docs tests keep docs/*.md and README.md true to the code: every
// `shoes-scaleset ...` command they show must exist and accept its flags,
// the flag tables of configuration.md must match the commands' flags (all
// of them, with their environment variables and defaults), and the
// environment variables, metrics, routes, fake plugin knobs and links they
// name must exist.

// docsEnvCommands are the commands whose flags are also read from
// SHOES_SCALESET_<FLAG> (they build an envBinding); keep in step with
// run.go, inspect.go, history.go, remove.go and migrate.go. Which of their
// flags the binding reads is not listed here: docsEnvReads asks the binding
// itself.
var docsEnvCommands = []string{"run", "runners ls", "runners history", "runners rm", "scalesets ls", "state migrate"}

// docsProbeFlag is a flag docsEnvReads adds to a command. It sorts after
// every real flag, and the probe's lookup gives it a value that does not
// parse, so the binding's apply looks up every flag it reads and then
// fails on the probe, before the command does anything.
const docsProbeFlag = "zzzz-docs-probe"

// docsEnvReads returns the flags of the command at path that its
// envBinding reads from SHOES_SCALESET_<FLAG>, learned by running the
// command's RunE with a lookup that records every variable asked for. A
// flag in envBinding.skip (such as runners rm --force) is never looked up,
// so it has no variable. It panics if path is not a command that applies
// an envBinding first.
func docsEnvReads(path []string) map[string]bool {
	asked := map[string]bool{}
	lookup := func(name string) (string, bool) {
		asked[name] = true
		if name == envName(docsProbeFlag) {
			return "not-a-number", true
		}
		return "", false
	}
	s := streams{Out: io.Discard, Err: io.Discard}
	root := &cobra.Command{Use: "shoes-scaleset"}
	// The constructors newRootCmd uses, with the recording lookup.
	root.AddCommand(newRunCmd(s, lookup), newRunnersCmd(s, lookup), newScaleSetsCmd(s, lookup), newStateCmd(s, lookup))
	cmd := root
	for _, w := range path {
		if cmd = docsChild(cmd, w); cmd == nil {
			panic(fmt.Sprintf("docsEnvCommands names %q, which is not a command with an envBinding", strings.Join(path, " ")))
		}
	}
	if cmd.RunE == nil {
		panic(fmt.Sprintf("`%s` has no RunE to apply its envBinding", strings.Join(path, " ")))
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name >= docsProbeFlag {
			panic(fmt.Sprintf("flag --%s of `%s` sorts after the probe --%s: rename the probe", f.Name, strings.Join(path, " "), docsProbeFlag))
		}
	})
	cmd.Flags().Int(docsProbeFlag, 0, "")
	// Should apply not stop at the probe, nothing may reach the network.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cmd.SetContext(ctx)
	err := cmd.RunE(cmd, []string{"myshoes-docs-probe"})
	if err == nil || !strings.Contains(err.Error(), "--"+docsProbeFlag) {
		panic(fmt.Sprintf("`%s` did not apply its envBinding before acting (error %v): docsEnvReads cannot learn its variables", strings.Join(path, " "), err))
	}
	reads := map[string]bool{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != docsProbeFlag && asked[envName(f.Name)] {
			reads[f.Name] = true
		}
	})
	return reads
}

// docsRequiredTables are the flag tables configuration.md must have.
var docsRequiredTables = []string{"run", "runners ls", "runners history", "runners rm", "scalesets ls", "state migrate"}

var (
	docsMetricRE    = regexp.MustCompile(`shoes_scaleset_[a-z0-9_]*[a-z0-9]`)
	docsEnvRE       = regexp.MustCompile(`SHOES_SCALESET_[A-Z0-9][A-Z0-9_]*`)
	docsSimEnvRE    = regexp.MustCompile(`SIM_PLUGIN_[A-Z0-9][A-Z0-9_]*`)
	docsRouteRE     = regexp.MustCompile(`/api/v1/[A-Za-z0-9_{}/-]*[A-Za-z0-9_}]`)
	docsLinkRE      = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	docsSpanRE      = regexp.MustCompile("`([^`]+)`")
	docsLongFlagRE  = regexp.MustCompile(`^--([a-z0-9][a-z0-9-]*)(=.*)?$`)
	docsShortFlagRE = regexp.MustCompile(`^-([a-zA-Z])$`)
	docsAssignRE    = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	docsRedirectRE  = regexp.MustCompile(`^[0-9]*[<>]`)
	docsFenceRE     = regexp.MustCompile("^(```+|~~~+)")
)

// docsFile is one markdown file: its name relative to the module root.
type docsFile struct {
	name string
	text string
}

// docsModuleRoot is the module root, two levels above this package.
func docsModuleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	return root
}

// docsLoad reads docs/*.md and README.md.
func docsLoad(t *testing.T) []docsFile {
	t.Helper()
	root := docsModuleRoot(t)
	names, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, filepath.Join(root, "README.md"))
	var files []docsFile
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, n)
		files = append(files, docsFile{name: filepath.ToSlash(rel), text: string(b)})
	}
	return files
}

// docsSources are the names the code defines, which the docs may mention.
type docsSources struct {
	metrics []string // shoes_scaleset_* metric names
	routes  []string // HTTP API paths
	simEnv  []string // SIM_PLUGIN_* variables
}

// docsReadSources collects the metric names, routes and fake plugin knobs
// from the source of the packages that define them.
func docsReadSources(t *testing.T) docsSources {
	t.Helper()
	root := docsModuleRoot(t)
	var s docsSources
	s.metrics = testkit.GrepSource(t, filepath.Join(root, "internal", "metrics"), regexp.MustCompile(`"(shoes_scaleset_[a-z0-9_]+)"`))
	s.routes = testkit.GrepSource(t, filepath.Join(root, "internal", "httpapi"), regexp.MustCompile(`"(?:GET|POST|PUT|PATCH|DELETE) (/[^" ]*)"`))
	s.simEnv = testkit.GrepSource(t, filepath.Join(root, "internal", "sim", "shoesfake"), regexp.MustCompile(`"(SIM_PLUGIN_[A-Z0-9_]+)"`))
	for what, list := range map[string][]string{"metric names": s.metrics, "routes": s.routes, "SIM_PLUGIN_ variables": s.simEnv} {
		if len(list) == 0 {
			t.Fatalf("found no %s in the source: the pattern of this test is out of date", what)
		}
	}
	return s
}

// docsChecker checks markdown files against the command tree.
type docsChecker struct {
	root     *cobra.Command
	sources  docsSources
	envNames map[string]bool            // every SHOES_SCALESET_ variable a command reads
	envFlags map[string]map[string]bool // command path -> flags read from the environment
	// readFile reads a link target that is not among the checked files.
	readFile func(name string) (string, bool)

	problems   []string
	helpPaths  map[string][]string        // command paths used, for --help
	tableFlags map[string]map[string]bool // command path -> flags in tables of configuration.md
}

func newDocsChecker(sources docsSources) *docsChecker {
	c := &docsChecker{
		root:       newRootCmd(streams{Out: new(bytes.Buffer), Err: new(bytes.Buffer)}, func() {}),
		sources:    sources,
		envNames:   map[string]bool{},
		envFlags:   map[string]map[string]bool{},
		readFile:   func(string) (string, bool) { return "", false },
		helpPaths:  map[string][]string{},
		tableFlags: map[string]map[string]bool{},
	}
	for _, path := range docsEnvCommands {
		if c.command(strings.Fields(path)) == nil {
			panic("docsEnvCommands names a missing command: " + path)
		}
		c.envFlags[path] = docsEnvReads(strings.Fields(path))
		for name := range c.envFlags[path] {
			c.envNames[envName(name)] = true
		}
	}
	return c
}

func (c *docsChecker) problemf(file string, line int, format string, args ...any) {
	where := file
	if line > 0 {
		where = fmt.Sprintf("%s:%d", file, line)
	}
	c.problems = append(c.problems, where+": "+fmt.Sprintf(format, args...))
}

// command returns the command at path, or nil.
func (c *docsChecker) command(path []string) *cobra.Command {
	cmd := c.root
	for _, w := range path {
		cmd = docsChild(cmd, w)
		if cmd == nil {
			return nil
		}
	}
	return cmd
}

func docsChild(cmd *cobra.Command, name string) *cobra.Command {
	for _, sub := range cmd.Commands() {
		if sub.Name() == name || slices.Contains(sub.Aliases, name) {
			return sub
		}
	}
	return nil
}

// docsLookup finds a flag of cmd by long name, its own or inherited; the
// help flag always exists.
func docsLookup(cmd *cobra.Command, name string) *pflag.Flag {
	cmd.InitDefaultHelpFlag()
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	return cmd.InheritedFlags().Lookup(name)
}

func docsShorthand(cmd *cobra.Command, short string) *pflag.Flag {
	cmd.InitDefaultHelpFlag()
	if f := cmd.Flags().ShorthandLookup(short); f != nil {
		return f
	}
	return cmd.InheritedFlags().ShorthandLookup(short)
}

// check checks every file, then what the set of files must cover.
func (c *docsChecker) check(files []docsFile) {
	byName := map[string]string{}
	for _, f := range files {
		byName[f.name] = f.text
	}
	for _, f := range files {
		c.checkMarkdown(f.name, f.text)
		c.checkNames(f.name, f.text)
		c.checkLinks(f.name, f.text, byName)
	}
	if _, ok := byName["docs/configuration.md"]; ok {
		for _, path := range docsRequiredTables {
			if len(c.tableFlags[path]) == 0 {
				c.problemf("docs/configuration.md", 0, "no flag table for `shoes-scaleset %s` (a table with a Flag column under a heading naming the command)", path)
			}
		}
	}
	c.checkCovered(byName, "docs/operations.md", "metric", c.sources.metrics)
	c.checkCovered(byName, "docs/architecture.md", "route", c.sources.routes)
	c.checkCovered(byName, "docs/development.md", "fake plugin variable", c.sources.simEnv)
}

// checkCovered requires every name to appear in file, if file is checked.
func (c *docsChecker) checkCovered(byName map[string]string, file, what string, names []string) {
	text, ok := byName[file]
	if !ok {
		return
	}
	for _, n := range names {
		if !strings.Contains(text, n) {
			c.problemf(file, 0, "%s %s is not documented", what, n)
		}
	}
}

// checkMarkdown walks the lines: shell lines in fenced code blocks, inline
// code spans, headings and tables.
func (c *docsChecker) checkMarkdown(file, text string) {
	lines := strings.Split(text, "\n")
	fence := ""          // the marker of the open fenced block, "" outside
	continued := ""      // a shell line continued with a backslash
	var heading []string // command path named by the latest heading, nil if none
	var table []string
	tableLine := 0
	flush := func() {
		if len(table) > 0 {
			c.checkTable(file, tableLine, heading, table)
		}
		table = nil
	}
	for i, line := range lines {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				fence, continued = "", ""
				continue
			}
			if strings.HasSuffix(trimmed, `\`) {
				continued += strings.TrimSuffix(trimmed, `\`) + " "
				continue
			}
			c.checkShell(file, n, continued+trimmed)
			continued = ""
			continue
		}
		if m := docsFenceRE.FindString(trimmed); m != "" {
			flush()
			fence = m
			continue
		}
		if strings.HasPrefix(trimmed, "|") {
			if len(table) == 0 {
				tableLine = n
			}
			table = append(table, trimmed)
		} else {
			flush()
		}
		if strings.HasPrefix(trimmed, "#") {
			heading = c.headingCommand(trimmed)
		}
		for _, m := range docsSpanRE.FindAllStringSubmatch(line, -1) {
			c.checkShell(file, n, m[1])
		}
	}
	flush()
	if fence != "" {
		c.problemf(file, 0, "a fenced code block is not closed")
	}
}

// headingCommand returns the command path a heading names in its first
// code span (`shoes-scaleset runners ls` or `runners ls`), or nil.
func (c *docsChecker) headingCommand(heading string) []string {
	m := docsSpanRE.FindStringSubmatch(heading)
	if m == nil {
		return nil
	}
	words := strings.Fields(strings.TrimPrefix(m[1], "shoes-scaleset"))
	if len(words) == 0 || c.command(words) == nil {
		return nil
	}
	return words
}

// docsSplitShell splits a shell line into simple commands at unquoted
// separators and tokenizes each, dropping quotes. A # that starts a word
// ends the line.
func docsSplitShell(line string) [][]string {
	var (
		cmds  [][]string
		words []string
		cur   strings.Builder
		inTok bool
		quote rune
	)
	endWord := func() {
		if inTok {
			words = append(words, cur.String())
		}
		cur.Reset()
		inTok = false
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
		words = nil
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inTok = r, true
		case unicode.IsSpace(r):
			endWord()
		case r == '#' && !inTok:
			endCmd()
			return cmds
		case r == '|' || r == ';' || r == '&' || r == '(' || r == ')' || r == '`':
			endCmd()
		case r == '$' && i+1 < len(rs) && rs[i+1] == '(':
			endCmd()
			i++
		default:
			cur.WriteRune(r)
			inTok = true
		}
	}
	endCmd()
	return cmds
}

// docsInvocationWords returns the words after the shoes-scaleset command
// word of a simple command, and whether it is a shoes-scaleset invocation.
// It looks past "$", sudo and its options, env, exec, variable
// assignments, systemd's ExecStart= and "go run ./cmd/shoes-scaleset".
func docsInvocationWords(words []string) ([]string, bool) {
	isSelf := func(w string) bool { return filepath.Base(w) == "shoes-scaleset" }
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "$" || w == "env" || w == "exec" || w == "nohup" || w == "time":
		case w == "sudo":
			for i+1 < len(words) && strings.HasPrefix(words[i+1], "-") {
				i++
				if words[i] == "-u" || words[i] == "-g" {
					i++
				}
			}
		case w == "go" && i+2 < len(words) && words[i+1] == "run":
			if isSelf(words[i+2]) {
				return words[i+3:], true
			}
			return nil, false
		case docsAssignRE.MatchString(w):
			m := docsAssignRE.FindStringSubmatch(w)
			if strings.HasPrefix(m[1], "Exec") {
				if isSelf(m[2]) {
					return words[i+1:], true
				}
				return nil, false
			}
		case isSelf(w):
			return words[i+1:], true
		default:
			return nil, false
		}
	}
	return nil, false
}

// checkShell checks every shoes-scaleset invocation in a line of shell.
func (c *docsChecker) checkShell(file string, line int, text string) {
	for _, words := range docsSplitShell(text) {
		args, ok := docsInvocationWords(words)
		if !ok {
			continue
		}
		c.checkInvocation(file, line, args)
	}
}

// checkInvocation resolves the command of args and checks its flags.
func (c *docsChecker) checkInvocation(file string, line int, args []string) {
	cmd := c.root
	var path, positional []string
	var longs, shorts []string
	flagsDone := false
	for _, a := range args {
		switch {
		case docsRedirectRE.MatchString(a):
		case a == "--":
			flagsDone = true
		case !flagsDone && docsLongFlagRE.MatchString(a):
			longs = append(longs, docsLongFlagRE.FindStringSubmatch(a)[1])
		case !flagsDone && docsShortFlagRE.MatchString(a):
			shorts = append(shorts, docsShortFlagRE.FindStringSubmatch(a)[1])
		case len(positional) == 0 && docsChild(cmd, a) != nil:
			cmd = docsChild(cmd, a)
			path = append(path, a)
		default:
			positional = append(positional, a)
		}
	}
	where := strings.TrimSpace("shoes-scaleset " + strings.Join(path, " "))
	if len(positional) > 0 && (!cmd.Runnable() || (cmd.HasSubCommands() && cmd.HasParent())) {
		c.problemf(file, line, "`%s` has no command %q", where, positional[0])
		return
	}
	for _, name := range longs {
		if docsLookup(cmd, name) == nil {
			c.problemf(file, line, "`%s` has no flag --%s", where, name)
		}
	}
	for _, s := range shorts {
		if docsShorthand(cmd, s) == nil {
			c.problemf(file, line, "`%s` has no flag -%s", where, s)
		}
	}
	c.helpPaths[strings.Join(path, " ")] = path
}

// docsCells splits a table row into trimmed cells.
func docsCells(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(row, "|")
	row = strings.TrimSuffix(row, "|")
	row = strings.ReplaceAll(row, `\|`, "\x00")
	cells := strings.Split(row, "|")
	for i, cell := range cells {
		cells[i] = strings.TrimSpace(strings.ReplaceAll(cell, "\x00", "|"))
	}
	return cells
}

func docsSpans(cell string) []string {
	var out []string
	for _, m := range docsSpanRE.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// checkTable checks a table with a Flag column against the command its
// heading names: every flag exists, and the environment variable, myshoes
// variable and default columns, where present, match. In
// configuration.md, the tables must list every flag of their command.
func (c *docsChecker) checkTable(file string, line int, heading []string, rows []string) {
	if len(rows) < 2 {
		return
	}
	header := docsCells(rows[0])
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(h)] = i
	}
	flagCol, ok := col["flag"]
	if !ok {
		return
	}
	if heading == nil {
		c.problemf(file, line, "flag table under a heading that names no command (put `shoes-scaleset <command>` in the heading)")
		return
	}
	path := strings.Join(heading, " ")
	cmd := c.command(heading)
	envFlags := c.envFlags[path] // nil if the command reads no variable
	inConfig := file == "docs/configuration.md"
	documented := map[string]bool{}
	myshoes := myshoesEnv()
	for i, row := range rows[2:] {
		n := line + 2 + i
		cells := docsCells(row)
		cell := func(name string) (string, bool) {
			j, ok := col[name]
			if !ok || j >= len(cells) {
				return "", false
			}
			return cells[j], true
		}
		if flagCol >= len(cells) {
			c.problemf(file, n, "row has no flag cell")
			continue
		}
		var long, short string
		for _, s := range docsSpans(cells[flagCol]) {
			if m := docsLongFlagRE.FindStringSubmatch(s); m != nil {
				long = m[1]
			} else if m := docsShortFlagRE.FindStringSubmatch(s); m != nil {
				short = m[1]
			}
		}
		if long == "" {
			c.problemf(file, n, "no `--flag` in the flag cell %q", cells[flagCol])
			continue
		}
		f := cmd.Flags().Lookup(long)
		if f == nil {
			c.problemf(file, n, "`shoes-scaleset %s` has no flag --%s", path, long)
			continue
		}
		documented[long] = true
		if short != "" && f.Shorthand != short {
			c.problemf(file, n, "--%s has shorthand %q, not -%s", long, f.Shorthand, short)
		}
		if v, ok := cell("environment variable"); ok {
			spans := docsSpans(v)
			switch {
			case envFlags == nil:
				c.problemf(file, n, "`shoes-scaleset %s` reads no environment variables", path)
			case !envFlags[long] && len(spans) > 0:
				c.problemf(file, n, "--%s is never read from the environment, the table says %q", long, v)
			case envFlags[long] && (len(spans) == 0 || spans[0] != envName(long)):
				c.problemf(file, n, "--%s: environment variable %q, want `%s`", long, v, envName(long))
			}
		}
		if v, ok := cell("myshoes variable"); ok {
			spans := docsSpans(v)
			want, has := myshoes[long]
			if path != "run" {
				has = false
			}
			switch {
			case has && (len(spans) == 0 || spans[0] != want):
				c.problemf(file, n, "--%s: myshoes variable %q, want `%s`", long, v, want)
			case !has && len(spans) > 0:
				c.problemf(file, n, "--%s has no myshoes variable, the table says %q", long, v)
			}
		}
		if v, ok := cell("default"); ok {
			spans := docsSpans(v)
			switch {
			case len(spans) > 0 && spans[0] != f.DefValue:
				c.problemf(file, n, "--%s: default %q, want `%s`", long, v, f.DefValue)
			case len(spans) == 0 && !strings.EqualFold(v, "none"):
				c.problemf(file, n, "--%s: default %q is neither a code span nor \"none\"", long, v)
			case len(spans) == 0 && f.DefValue != "" && f.DefValue != "[]":
				c.problemf(file, n, "--%s: default says none, the flag's is `%s`", long, f.DefValue)
			}
		}
	}
	if !inConfig {
		return
	}
	if c.tableFlags[path] == nil {
		c.tableFlags[path] = map[string]bool{}
	}
	for k := range documented {
		c.tableFlags[path][k] = true
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || f.Hidden || c.tableFlags[path][f.Name] {
			return
		}
		c.problemf(file, line, "the table of `shoes-scaleset %s` lacks --%s", path, f.Name)
	})
}

// checkNames checks the environment variables, metric names, routes and
// fake plugin variables a file mentions.
func (c *docsChecker) checkNames(file, text string) {
	lineOf := func(off int) int { return strings.Count(text[:off], "\n") + 1 }
	for _, m := range docsEnvRE.FindAllStringIndex(text, -1) {
		if name := text[m[0]:m[1]]; !c.envNames[name] {
			c.problemf(file, lineOf(m[0]), "no command reads %s", name)
		}
	}
	for _, m := range docsMetricRE.FindAllStringIndex(text, -1) {
		name := text[m[0]:m[1]]
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if t := strings.TrimSuffix(name, suffix); t != name && slices.Contains(c.sources.metrics, t) {
				base = t
			}
		}
		if !slices.Contains(c.sources.metrics, base) {
			c.problemf(file, lineOf(m[0]), "no metric %s", name)
		}
	}
	for _, m := range docsRouteRE.FindAllStringIndex(text, -1) {
		if p := text[m[0]:m[1]]; !slices.Contains(c.sources.routes, p) {
			c.problemf(file, lineOf(m[0]), "no route %s", p)
		}
	}
	for _, m := range docsSimEnvRE.FindAllStringIndex(text, -1) {
		if name := text[m[0]:m[1]]; !slices.Contains(c.sources.simEnv, name) {
			c.problemf(file, lineOf(m[0]), "the fake plugin reads no %s", name)
		}
	}
}

// docsSlug is the GitHub anchor of a heading.
func docsSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// docsAnchors returns the anchors of the headings of a markdown text.
func docsAnchors(text string) map[string]bool {
	out := map[string]bool{}
	fence := false
	for _, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
			fence = !fence
			continue
		}
		if !fence && strings.HasPrefix(t, "#") {
			out[docsSlug(strings.TrimLeft(t, "#"))] = true
		}
	}
	return out
}

// checkLinks checks relative links: the file exists and, for markdown, the
// anchor is a heading of it.
func (c *docsChecker) checkLinks(file, text string, byName map[string]string) {
	for _, m := range docsLinkRE.FindAllStringSubmatchIndex(text, -1) {
		target := text[m[2]:m[3]]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		line := strings.Count(text[:m[0]], "\n") + 1
		ref, anchor, _ := strings.Cut(target, "#")
		name := file
		if ref != "" {
			name = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(file), ref)))
		}
		body, ok := byName[name]
		if !ok {
			body, ok = c.readFile(name)
		}
		if !ok {
			c.problemf(file, line, "link to %s: no such file", target)
			continue
		}
		if anchor != "" && strings.HasSuffix(name, ".md") && !docsAnchors(body)[anchor] {
			c.problemf(file, line, "link to %s: %s has no heading with anchor #%s", target, name, anchor)
		}
	}
}

// TestDocsCommandsFlagsAndNames checks docs/*.md and README.md against the
// code, then runs every command path they use with --help.
func TestDocsCommandsFlagsAndNames(t *testing.T) {
	files := docsLoad(t)
	if len(files) < 2 {
		t.Fatalf("found %d markdown files, want docs/*.md and README.md", len(files))
	}
	root := docsModuleRoot(t)
	c := newDocsChecker(docsReadSources(t))
	c.readFile = func(name string) (string, bool) {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		return string(b), err == nil
	}
	c.check(files)
	for _, p := range c.problems {
		t.Error(p)
	}
	if len(c.helpPaths) < 5 {
		t.Errorf("found %d command paths in the docs; the scan is broken", len(c.helpPaths))
	}
	if len(c.tableFlags["run"]) == 0 {
		t.Error("found no flag table of run in docs/configuration.md")
	}

	keys := make([]string, 0, len(c.helpPaths))
	for k := range c.helpPaths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := c.helpPaths[k]
		t.Run("help "+strings.Join(append([]string{"shoes-scaleset"}, path...), " "), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errOut bytes.Buffer
			args := append(slices.Clone(path), "--help")
			if code := Main(ctx, cancel, args, &out, &errOut); code != exitOK {
				t.Fatalf("Main(%q) = %d, want 0\nstdout:\n%s\nstderr:\n%s", args, code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), "Usage:") {
				t.Errorf("Main(%q) printed no usage:\n%s", args, out.String())
			}
		})
	}
}

// TestDocsCheckerCatchesMistakes feeds the checker documents with one
// mistake each and requires it to report that mistake.
func TestDocsCheckerCatchesMistakes(t *testing.T) {
	sources := docsReadSources(t)
	tests := []struct {
		name string
		file string
		text string
		want string
	}{
		{"unknown flag in a code block", "docs/x.md", "```sh\nshoes-scaleset run --bogus-flag 1\n```\n", "has no flag --bogus-flag"},
		{"unknown flag in inline code", "docs/x.md", "Use `shoes-scaleset runners ls --bogus` here.\n", "has no flag --bogus"},
		{"flag of another command", "docs/x.md", "`shoes-scaleset runners rm --state idle x`\n", "has no flag --state"},
		{"unknown short flag", "docs/x.md", "`shoes-scaleset scalesets ls -z`\n", "has no flag -z"},
		{"unknown command", "docs/x.md", "```\n$ sudo -u svc shoes-scaleset runners lss\n```\n", `has no command "lss"`},
		{"continued line", "docs/x.md", "```sh\nshoes-scaleset run \\\n  --nope\n```\n", "has no flag --nope"},
		{"systemd ExecStart", "docs/x.md", "```ini\nExecStart=/usr/local/bin/shoes-scaleset run --nope\n```\n", "has no flag --nope"},
		{"unknown environment variable", "docs/x.md", "Set SHOES_SCALESET_NO_SUCH_FLAG=1.\n", "no command reads SHOES_SCALESET_NO_SUCH_FLAG"},
		{"variable of a flag in envBinding.skip", "docs/x.md", "Set SHOES_SCALESET_FORCE=true.\n", "no command reads SHOES_SCALESET_FORCE"},
		{"unknown metric", "docs/x.md", "Alert on `shoes_scaleset_bogus_total`.\n", "no metric shoes_scaleset_bogus_total"},
		{"unknown route", "docs/x.md", "`GET /api/v1/bogus`\n", "no route /api/v1/bogus"},
		{"unknown fake plugin knob", "docs/x.md", "`SIM_PLUGIN_BOGUS=1`\n", "reads no SIM_PLUGIN_BOGUS"},
		{"broken anchor", "docs/x.md", "# Title\n\nSee [there](#nowhere).\n", "no heading with anchor #nowhere"},
		{"table flag that does not exist", "docs/x.md",
			"## `shoes-scaleset runners rm`\n\n| Flag | Default |\n|---|---|\n| `--bogus` | `x` |\n", "has no flag --bogus"},
		{"table default out of date", "docs/x.md",
			"## `shoes-scaleset runners rm`\n\n| Flag | Default |\n|---|---|\n| `--listen` | `127.0.0.1:1` |\n", "default"},
		{"table environment variable wrong", "docs/x.md",
			"## `shoes-scaleset runners rm`\n\n| Flag | Environment variable |\n|---|---|\n| `--listen` | `SHOES_SCALESET_FORCE` |\n", "want `SHOES_SCALESET_LISTEN`"},
		{"table environment variable missing", "docs/x.md",
			"## `shoes-scaleset runners ls`\n\n| Flag | Environment variable |\n|---|---|\n| `--state` | — |\n", "want `SHOES_SCALESET_STATE`"},
		{"table environment variable of a flag in envBinding.skip", "docs/x.md",
			"## `shoes-scaleset runners rm`\n\n| Flag | Environment variable |\n|---|---|\n| `--force` | `SHOES_SCALESET_FORCE` |\n", "--force is never read from the environment"},
		{"table myshoes variable wrong", "docs/x.md",
			"## `shoes-scaleset run`\n\n| Flag | myshoes variable |\n|---|---|\n| `--plugin` | `GITHUB_URL` |\n", "want `PLUGIN`"},
		{"table without a command", "docs/x.md",
			"## Flags\n\n| Flag | Default |\n|---|---|\n| `--listen` | none |\n", "names no command"},
		{"configuration table missing a flag", "docs/configuration.md",
			"## `shoes-scaleset runners rm`\n\n| Flag | Default |\n|---|---|\n| `--listen` | `127.0.0.1:9780` |\n", "lacks --force"},
		{"configuration without the run table", "docs/configuration.md", "# Configuration\n", "no flag table for `shoes-scaleset run`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newDocsChecker(sources)
			c.check([]docsFile{{name: tc.file, text: tc.text}})
			found := false
			for _, p := range c.problems {
				if strings.Contains(p, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("problems %q do not report %q", c.problems, tc.want)
			}
		})
	}

	// And a correct document yields no problem.
	ok := "## `shoes-scaleset runners rm`\n\n| Flag | Environment variable | Default |\n|---|---|---|\n" +
		"| `--listen` | `SHOES_SCALESET_LISTEN` | `127.0.0.1:9780` |\n| `--force` | — | `false` |\n\n" +
		"```sh\nshoes-scaleset runners rm --force myshoes-x   # a comment --not-a-flag\nsudo -u svc shoes-scaleset runners ls -o json | jq .\n```\n" +
		"Metric `shoes_scaleset_provision_duration_seconds_bucket`, route `/api/v1/runners/{name}/remove`.\n"
	c := newDocsChecker(sources)
	c.check([]docsFile{{name: "docs/ok.md", text: ok}})
	if len(c.problems) > 0 {
		t.Errorf("a correct document has problems: %q", c.problems)
	}
	if _, ok := c.helpPaths["runners ls"]; !ok {
		t.Errorf("the invocation after sudo was not found: %v", c.helpPaths)
	}
}

// TestDocsEnvReads checks that docsEnvReads learns the variables from the
// binding: runners rm reads --listen, never --force (envBinding.skip).
func TestDocsEnvReads(t *testing.T) {
	rm := docsEnvReads([]string{"runners", "rm"})
	if !rm["listen"] || rm["force"] {
		t.Errorf("runners rm reads %v from the environment, want listen and not force", rm)
	}
	for _, path := range docsEnvCommands {
		if len(docsEnvReads(strings.Fields(path))) == 0 {
			t.Errorf("`%s` reads no flag from the environment; drop it from docsEnvCommands", path)
		}
	}
}
