// Package actionsfake is a loopback fake of GitHub (GHES-style URLs), the
// GitHub Actions service, the scale set message broker, the runner side and a
// small control API, for tests, benchmarks and the demo. The real
// github.com/actions/scaleset v0.2.0 client works against it unchanged.
//
// One http.Handler serves everything ({base} is the SetBaseURL value):
//
//	GitHub REST API (app JWT = RS256 signed with the app key; inst = installation token or PAT)
//	  POST   /api/v3/app/installations/{id}/access_tokens              app JWT -> 201 {token,expires_at}
//	  GET    /api/v3/app/installations                                 app JWT -> 200 [installation]
//	  GET    /api/v3/orgs/{org}/installation                           app JWT -> 200 | 404 (Uninstalled)
//	  GET    /api/v3/users/{user}/installation                         app JWT
//	  GET    /api/v3/repos/{owner}/{repo}/installation                 app JWT
//	  POST   /api/v3/orgs/{org}/actions/runners/registration-token     inst -> 201 {token,expires_at}
//	  POST   /api/v3/repos/{owner}/{repo}/actions/runners/registration-token
//	  POST   /api/v3/enterprises/{e}/actions/runners/registration-token
//	  GET    /api/v3/orgs/{org}/actions/runners/downloads              inst -> 200 [{os,architecture,download_url,filename}]
//	  GET    /api/v3/repos/{owner}/{repo}/actions/runners/downloads
//	  POST   /api/v3/actions/runner-registration                       RemoteAuth <registration token> -> {url:"{base}/_actions/",token:<admin JWT>}
//
//	Actions service (?api-version=... required; Bearer admin JWT, whose "scope" claim scopes everything)
//	  GET    /_actions/_apis/runtime/runnergroups/?groupName=X
//	  GET    /_actions/_apis/runtime/runnerscalesets?runnerGroupId=N&name=X
//	  POST   /_actions/_apis/runtime/runnerscalesets
//	  GET    /_actions/_apis/runtime/runnerscalesets/{id}              (PATCH, DELETE too)
//	  POST   /_actions/_apis/runtime/runnerscalesets/{id}/sessions
//	  PATCH  /_actions/_apis/runtime/runnerscalesets/{id}/sessions/{sid}   (DELETE too)
//	  POST   /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig
//	  POST   /_actions/_apis/runtime/runnerscalesets/{id}/acquirejobs     Bearer message-queue token
//	  GET    /_actions/_apis/distributedtask/pools/0/agents?agentName=X
//	  GET    /_actions/_apis/distributedtask/pools/0/agents/{id}         (DELETE too)
//
//	Broker (Bearer message-queue token)
//	  GET    /_broker/{scaleSetId}/{sessionId}/messages[?lastMessageId=N]   (= messageQueueUrl)
//	  DELETE /_broker/{scaleSetId}/{sessionId}/messages/{messageId}
//
//	Runner side (Bearer = the token in the JIT config's .credentials)
//	  POST   /_sim/runner/connect            {"agentId","agentName"} -> {"state":"idle"}
//	  GET    /_sim/runner/{agentId}/wait?holdMs=N[&since=<state>] -> {"state","jobId"}
//
//	Control (never faulted)
//	  POST   /_sim/jobs              JobsRequest -> JobsResult
//	  POST   /_sim/faults            Fault;  DELETE /_sim/faults
//	  POST   /_sim/sessions/evict    [EvictRequest] -> EvictResult
//	  GET    /_sim/state             State
//
// What the real service does, the fake does too (PROTOCOLS.md §2):
//
//   - Sessions expire when nobody polls them for Config.SessionTTL, and
//     can be evicted (EvictSessions). Their scale set takes a new session;
//     the old one's queue answers 401, its refresh 404 RunnerAdminException
//     and its DELETE 400 RunnerScaleSetSessionExpiredException.
//   - Error type names are assembly-qualified .NET names (exceptions.go).
//   - Runners have a status of online, offline or busy.
//   - A scale set gets no more jobs than the X-ScaleSetMaxCapacity its last
//     poll reported; a message carries at most 50 job entries.
//   - GHES mode offers a job again until it is acquired.
//   - Optional: a UTF-8 BOM on every body (Config.BOM), GHES 3.18-3.20
//     label dropping (Config.DropCustomLabels), and no ack by
//     lastMessageId (Config.NoAckThrough), runner groups besides the
//     default one (Config.RunnerGroups). Faults can set headers and
//     answer with no body.
//
// A correct client leaves State().Violations empty.
package actionsfake
