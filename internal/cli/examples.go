package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// otherExamples are the examples of the commands that do not state their
// own (cobra.Command.Example), by command path without the root: those of
// cobra's help and completion commands, and of commands whose files are
// kept elsewhere for now. A command that states its own example needs no
// entry here, and TestEveryCommandHasAnExample fails if it has one.
func otherExamples() map[string]string {
	return map[string]string{
		"help": `  shoes-scaleset help runners ls`,
		"completion": `  # Bash, for this shell
  source <(shoes-scaleset completion bash)`,
		"completion bash": `  # For this shell
  source <(shoes-scaleset completion bash)

  # For every new shell (Linux)
  shoes-scaleset completion bash > /etc/bash_completion.d/shoes-scaleset`,
		"completion zsh": `  # For every new shell
  shoes-scaleset completion zsh > "${fpath[1]}/_shoes-scaleset"`,
		"completion fish":       `  shoes-scaleset completion fish > ~/.config/fish/completions/shoes-scaleset.fish`,
		"completion powershell": `  shoes-scaleset completion powershell | Out-String | Invoke-Expression`,

		"run": `  # Next to myshoes, with myshoes's variables (GITHUB_*, PLUGIN, RUNNER_*) in the
  # environment, e.g. from systemd's EnvironmentFile=/etc/myshoes/myshoes.env
  shoes-scaleset run --myshoes-url http://127.0.0.1:8080

  # A GitHub App key in a file, at most 20 runners per scale set
  shoes-scaleset run --myshoes-url http://127.0.0.1:8080 --github-app-id 123456 \
    --github-private-key-path /etc/shoes-scaleset/app-key.pem \
    --plugin /usr/local/bin/shoes-lxd --max-runners 20

  # One of several replicas sharing the state in etcd
  shoes-scaleset run --myshoes-url http://127.0.0.1:8080 --store etcd \
    --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379 --replica-id node-a`,
		"state": `  shoes-scaleset state migrate --from bbolt:/var/lib/shoes-scaleset/state.db --to etcd \
    --etcd-endpoints https://10.0.0.1:2379`,
		"state migrate": `  # From one machine to replicas: the stopped daemon's file into etcd
  shoes-scaleset state migrate --from bbolt:/var/lib/shoes-scaleset/state.db --to etcd \
    --etcd-endpoints https://10.0.0.1:2379

  # Back: etcd into a new state file
  shoes-scaleset state migrate --from etcd --to bbolt:/var/lib/shoes-scaleset/state-new.db \
    --etcd-endpoints https://10.0.0.1:2379`,
		"config": `  shoes-scaleset config check /etc/shoes-scaleset/policy.yaml --myshoes-url http://127.0.0.1:8080`,
		"sim":    `  shoes-scaleset sim serve --listen 127.0.0.1:8081 --targets org-a,org-b/repo`,
		"sim serve": `  # The fakes on a fixed port, with two targets
  shoes-scaleset sim serve --listen 127.0.0.1:8081 --targets org-a,org-b/repo

  # GHES mode: jobs must be acquired
  shoes-scaleset sim serve --acquire`,
		"sim plugin": `  # A plugin host starts it: give run a wrapper script as --plugin
  printf '#!/bin/sh\nexec shoes-scaleset sim plugin "$@"\n' > /tmp/fake-plugin && chmod +x /tmp/fake-plugin
  SIM_PLUGIN_LATENCY=2s shoes-scaleset run --plugin /tmp/fake-plugin --myshoes-url http://127.0.0.1:8081/myshoes \
    --github-url http://127.0.0.1:8081 --github-app-id 4242 --github-private-key-path /tmp/app-key.pem`,
		"sim runner": `  # What the fake runner tarball's run.sh runs
  shoes-scaleset sim runner --jitconfig "$JIT_CONFIG"`,
	}
}

// addExamples gives the commands of root's tree that state no example the
// one otherExamples holds for them.
func addExamples(root *cobra.Command) {
	examples := otherExamples()
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if ex, ok := examples[strings.Join(path, " ")]; ok && c.Example == "" {
			c.Example = ex
		}
		for _, sub := range c.Commands() {
			walk(sub, append(path[:len(path):len(path)], sub.Name()))
		}
	}
	walk(root, nil)
}
