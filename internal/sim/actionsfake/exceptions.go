package actionsfake

import "strings"

// Exception type names of the Actions service's error bodies. GitHub names
// the .NET type with its namespace and assembly: a DELETE of an expired
// session answers typeName "GitHub.Actions.Runtime.WebApi.
// RunnerScaleSetSessionExpiredException, GitHub.Actions.Runtime.WebApi"
// (printed as "<typeName>: <message>" in actions-runner-controller#4285),
// and typeKey carries the short name. actions/scaleset matches type names
// with strings.Contains (errors.go), so its sentinels keep working; a client
// that compares a short name for equality fails here as against GitHub.
const (
	exArgument     = "System.ArgumentException"
	exArgumentNull = "System.ArgumentNullException"
	exInternal     = "System.InvalidOperationException"

	exUnauthorized      = "GitHub.Services.WebApi.VssUnauthorizedException, GitHub.Services.WebApi"
	exInvalidAPIVersion = "GitHub.Services.WebApi.VssInvalidApiVersionException, GitHub.Services.WebApi"

	exScaleSetNotFound    = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetNotFoundException, GitHub.Actions.Runtime.WebApi"
	exScaleSetExists      = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetExistsException, GitHub.Actions.Runtime.WebApi"
	exRunnerGroupNotFound = "GitHub.Actions.Runtime.WebApi.RunnerGroupNotFoundException, GitHub.Actions.Runtime.WebApi"
	exSessionConflict     = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, GitHub.Actions.Runtime.WebApi"
	exSessionExpired      = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException, GitHub.Actions.Runtime.WebApi"
	// exRunnerAdmin is the 404 of a refresh of a session the service no
	// longer has, quoted bare in actions/scaleset#123.
	exRunnerAdmin = "RunnerAdminException"

	exSessionNotFound      = "GitHub.DistributedTask.WebApi.TaskAgentSessionNotFoundException, GitHub.DistributedTask.WebApi"
	exAgentSessionConflict = "GitHub.DistributedTask.WebApi.TaskAgentSessionConflictException, GitHub.DistributedTask.WebApi"
	exMessageNotFound      = "GitHub.DistributedTask.WebApi.TaskAgentMessageNotFoundException, GitHub.DistributedTask.WebApi"
	exAgentNotFound        = "GitHub.DistributedTask.WebApi.AgentNotFoundException, GitHub.DistributedTask.WebApi"
	exAgentExists          = "GitHub.DistributedTask.WebApi.AgentExistsException, GitHub.DistributedTask.WebApi"
	exJobStillRunning      = "GitHub.DistributedTask.WebApi.JobStillRunningException, GitHub.DistributedTask.WebApi"

	// Fake-only answers: injected faults and the sim runner side.
	exSimulatedFault     = "SimulatedFaultException"
	exServiceUnavailable = "ServiceUnavailableException"
)

// typeKey is the short name of a type name: "GitHub.X.FooException, GitHub.X" -> "FooException".
func typeKey(typeName string) string {
	name, _, _ := strings.Cut(typeName, ",")
	return name[strings.LastIndex(name, ".")+1:]
}
