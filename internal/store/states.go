package store

// RunnerStates returns every runner state, in lifecycle order: the values
// `runners ls --state` accepts.
func RunnerStates() []RunnerState {
	return []RunnerState{StatePending, StateConfigured, StateIdle, StateBusy, StateDeleting, StateUnknownInstance}
}
