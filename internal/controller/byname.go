package controller

import (
	"errors"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// The shoes protocol has no "list instances", so an AddInstance whose
// answer never arrived (the plugin crashed or hung, run was killed) leaves
// an unknown-instance record: an instance may exist that we cannot name.
// Most installations run shoes-lxd, which names the instance after the
// runner, answers the runner name as the cloud ID, and answers NotFound to
// a DeleteInstance of a name it does not have (whywaita/shoes-lxd
// main.go). With such a plugin the instance can be named after all: the
// controller learns from the AddInstance answers whether the plugin is
// name-keyed, and then deletes the instance of an unknown-instance record
// by the runner's name. A plugin with opaque cloud IDs (shoes-aws,
// shoes-openstack) keeps today's behaviour: the record stays for the
// operator.

// reasonRecoveredByName is the history reason of an unknown-instance
// record resolved by deleting its instance by the runner's name.
const reasonRecoveredByName = "recovered-by-name"

// loadCloudIDs reads what an earlier run learned of this plugin's cloud IDs.
func (c *Controller) loadCloudIDs() {
	ids, found, err := c.store.CloudIDs()
	if err != nil {
		c.log.Warn("read what was learned of the plugin's cloud IDs", "err", err)
		return
	}
	if !found || ids.Plugin != c.cfg.PluginID {
		return // nothing learned of this plugin yet
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	nameKeyed := ids.NameKeyed
	c.nameKeyed = &nameKeyed
}

// learnCloudID records what a successful AddInstance answer says of the
// plugin: whether its cloud ID is the runner name. One answer that is not
// makes the plugin opaque for good; it is written only when it changes.
func (c *Controller) learnCloudID(runnerName, cloudID string) {
	nameKeyed := cloudID == runnerName
	c.mu.Lock()
	change := c.nameKeyed == nil || (*c.nameKeyed && !nameKeyed)
	if change {
		c.nameKeyed = &nameKeyed
	}
	c.mu.Unlock()
	if !change {
		return
	}
	if err := c.store.SetCloudIDs(store.CloudIDs{Plugin: c.cfg.PluginID, NameKeyed: nameKeyed, LearnedAt: c.cfg.Now()}); err != nil {
		c.log.Warn("record what was learned of the plugin's cloud IDs", "err", err)
	}
	if nameKeyed {
		c.log.Info("the plugin names instances after their runners: the instance of an interrupted AddInstance will be deleted by the runner's name")
	} else {
		c.log.Info("the plugin's cloud IDs are not the runner names: an interrupted AddInstance leaves an unknown-instance record for the operator")
	}
}

func (c *Controller) pluginNameKeyed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nameKeyed != nil && *c.nameKeyed
}

// resolveByName deletes the instance of an unknown-instance record by the
// runner's name, if the plugin is name-keyed. It waits until the plugin's
// AddInstance deadline has passed since the call was sent: a backend may
// still be creating the instance after the plugin process is gone. A
// runner that may be running a job (it started one, and it has not
// completed) is left alone. The delete goes the usual way: DeleteInstance
// OK or NotFound ends the record (history reason recovered-by-name); an
// error keeps it, retried with backoff.
func (c *Controller) resolveByName(r store.Runner) {
	if !c.pluginNameKeyed() || (r.JobID != "" && r.JobResult == "") {
		return
	}
	sent := r.StateSince[store.StateConfigured]
	if sent.IsZero() {
		sent = r.StateSince[store.StateUnknownInstance]
	}
	now := c.cfg.Now()
	if now.Sub(sent) < c.cfg.AddTimeout {
		return
	}
	changed, err := c.toDeleting(r.Name, reasonRecoveredByName, func(r *store.Runner) bool {
		if r.State != store.StateUnknownInstance {
			return false
		}
		r.CloudID = r.Name
		return true
	})
	switch {
	case errors.Is(err, store.ErrNotFound), err == nil && !changed:
		return
	case err != nil:
		c.runnerLog(r).Error("resolve an unknown-instance runner by name", "err", err)
		return
	}
	c.runnerLog(r).Info("deleting the instance of an unknown-instance runner by its name", "sent", sent.Format(time.RFC3339))
	c.startDelete(r.Name)
}
