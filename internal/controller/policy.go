package controller

import (
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/policy"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Policy gives each target its scale set settings: min and max runners,
// labels, runner group, scale set name, disabled (internal/policy).
type Policy interface {
	For(scope, resourceType string) policy.Effective
}

var _ Policy = (*policy.Policy)(nil)

// basePolicy is the policy of the Config's own settings, for every target.
func (c Config) basePolicy() *policy.Policy {
	return policy.Static(policy.Settings{
		MinRunners:  c.MinRunners,
		MaxRunners:  c.MaxRunners,
		Labels:      c.Labels,
		RunnerGroup: c.RunnerGroup,
	})
}

// SetPolicy replaces the policy. The targets are applied again at once:
// a target whose scale set must change (name, labels or runner group) is
// restarted, one whose min or max runners changed keeps its session and
// scales to the new bounds, and a disabled one stops as if it had left
// myshoes's list.
func (c *Controller) SetPolicy(p Policy) {
	c.mu.Lock()
	c.pol = p
	c.mu.Unlock()
	select {
	case c.policyNow <- struct{}{}:
	default:
	}
}

func (c *Controller) currentPolicy() Policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pol
}

// policyScaleSetName is the name the policy gives the target's scale set: its
// scale_set_name, else <prefix>-<scope>, mapped to what GitHub accepts.
func (c *Controller) policyScaleSetName(scope string, eff policy.Effective) string {
	if eff.ScaleSetName != "" {
		return github.ScaleSetName("", eff.ScaleSetName)
	}
	return github.ScaleSetName(c.cfg.ScaleSetPrefix, scope)
}

// applyPolicy returns the enabled targets and what the policy gives each.
// A target newly disabled is logged once, with the rule that did it.
func (c *Controller) applyPolicy(targets []myshoes.Target) ([]myshoes.Target, map[string]policy.Effective) {
	pol := c.currentPolicy()
	enabled := make([]myshoes.Target, 0, len(targets))
	effs := make(map[string]policy.Effective, len(targets))
	disabled := map[string]string{}
	for _, t := range targets {
		eff := pol.For(t.Scope, t.ResourceType)
		if eff.Disabled {
			disabled[t.ID] = eff.Rule
			if c.disabled[t.ID] != eff.Rule {
				c.log.Info("target disabled by the policy; not serving it", "target", t.ID, "scope", t.Scope, "rule", eff.Rule)
			}
			continue
		}
		effs[t.ID] = eff
		enabled = append(enabled, t)
	}
	c.disabled = disabled
	return enabled, effs
}

// policy returns what the policy gives the worker's target.
func (w *targetWorker) policy() policy.Effective {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pol
}

// setPolicy gives the worker's target new min and max runners (a change
// of its scale set restarts the worker instead: applyTargets). Its scale
// set scales to them at once, on the same session.
func (w *targetWorker) setPolicy(eff policy.Effective) {
	w.mu.Lock()
	old := w.pol
	w.pol = eff
	set := w.set
	w.mu.Unlock()
	if old.MinRunners == eff.MinRunners && old.MaxRunners == eff.MaxRunners && old.Rule == eff.Rule {
		return
	}
	w.log.Info("policy changed", "rule", eff.Rule, "min_runners", eff.MinRunners, "max_runners", eff.MaxRunners)
	if set == nil {
		return // adopt applies it, with the scale set
	}
	w.syncPolicy(set)
}

// syncPolicy applies the worker's policy in force to set, and to its
// stored record if that says otherwise. It reads the policy under w.mu
// after set became the worker's (adopt), so a reload that came while the
// scale set was being ensured is not lost to the bounds read before it.
func (w *targetWorker) syncPolicy(set *scaleSet) {
	w.mu.Lock()
	eff, t := w.pol, w.target
	w.mu.Unlock()
	set.setLimits(eff)
	rec, err := w.c.store.GetScaleSet(t.ID)
	if err == nil && rec.MinRunners == eff.MinRunners && rec.MaxRunners == eff.MaxRunners && rec.PolicyRule == eff.Rule {
		return
	}
	if err := w.c.store.UpdateScaleSet(t.ID, func(s *store.ScaleSet) error {
		s.MinRunners, s.MaxRunners, s.PolicyRule = eff.MinRunners, eff.MaxRunners, eff.Rule
		return nil
	}); err != nil {
		// The record is what scalesets ls shows; the bounds themselves
		// apply already.
		w.log.Warn("store the scale set's policy", "err", err)
	}
}

// limits returns the scale set's min and max runners.
func (s *scaleSet) limits() (minRunners, maxRunners int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.minRunners, s.maxRunners
}

// setLimits applies new min and max runners: the desired count follows,
// and the reconcile loop is woken to scale to it.
func (s *scaleSet) setLimits(eff policy.Effective) {
	s.mu.Lock()
	s.minRunners, s.maxRunners = eff.MinRunners, eff.MaxRunners
	s.mu.Unlock()
	s.c.rec.Limits(s.scope, s.name, eff.MinRunners, eff.MaxRunners)
	s.setStatistics(nil)
}
