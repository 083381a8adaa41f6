package actionsfake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// RunnerSettings is the ".runner" file of a JIT config.
type RunnerSettings struct {
	AgentID       int64  `json:"agentId"`
	AgentName     string `json:"agentName"`
	PoolID        int    `json:"poolId"`
	PoolName      string `json:"poolName"`
	ScaleSetID    int    `json:"scaleSetId"`
	ServerURL     string `json:"serverUrl"`
	GitHubURL     string `json:"gitHubUrl"`
	WorkFolder    string `json:"workFolder"`
	Ephemeral     bool   `json:"ephemeral"`
	DisableUpdate bool   `json:"disableUpdate"`
}

// RunnerCredentials is the ".credentials" file of a JIT config.
type RunnerCredentials struct {
	Scheme string            `json:"scheme"`
	Data   map[string]string `json:"data"`
}

// JITConfig is a decoded encodedJITConfig.
type JITConfig struct {
	Runner      RunnerSettings
	Credentials RunnerCredentials
	// Token is Credentials.Data["token"], the bearer of the runner-side API.
	Token string
}

// encodeJITConfig builds base64(JSON{file name: base64(file)}).
func encodeJITConfig(settings RunnerSettings, token string) (string, error) {
	creds := RunnerCredentials{Scheme: "OAuth", Data: map[string]string{
		"clientId": randomHex(16),
		"token":    token,
	}}
	rsa := map[string]string{
		"d":        base64.StdEncoding.EncodeToString([]byte(randomHex(64))),
		"exponent": "AQAB",
		"modulus":  base64.StdEncoding.EncodeToString([]byte(randomHex(128))),
	}
	files := map[string]any{".runner": settings, ".credentials": creds, ".credentials_rsaparams": rsa}
	encoded := make(map[string]string, len(files))
	for name, v := range files {
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("encode %s: %w", name, err)
		}
		encoded[name] = base64.StdEncoding.EncodeToString(b)
	}
	outer, err := json.Marshal(encoded)
	if err != nil {
		return "", fmt.Errorf("encode jit config: %w", err)
	}
	return base64.StdEncoding.EncodeToString(outer), nil
}

// DecodeJITConfig decodes an encodedJITConfig as handed out by
// generatejitconfig, for the simulated runner.
func DecodeJITConfig(encoded string) (JITConfig, error) {
	outer, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return JITConfig{}, fmt.Errorf("decode jit config: %w", err)
	}
	var files map[string]string
	if err := json.Unmarshal(outer, &files); err != nil {
		return JITConfig{}, fmt.Errorf("decode jit config files: %w", err)
	}
	var cfg JITConfig
	for name, dst := range map[string]any{".runner": &cfg.Runner, ".credentials": &cfg.Credentials} {
		raw, ok := files[name]
		if !ok {
			return JITConfig{}, fmt.Errorf("decode jit config: %s missing", name)
		}
		b, err := base64.StdEncoding.DecodeString(raw)
		if err != nil {
			return JITConfig{}, fmt.Errorf("decode jit config %s: %w", name, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			return JITConfig{}, fmt.Errorf("decode jit config %s: %w", name, err)
		}
	}
	cfg.Token = cfg.Credentials.Data["token"]
	return cfg, nil
}
