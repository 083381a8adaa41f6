package actionsfake

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v4"
)

// GitHub accepts app JWTs that expire at most 10 minutes ahead; allow a minute of drift.
const (
	appJWTMaxLifetime = 10 * time.Minute
	clockDrift        = time.Minute
)

// verifyAppJWT checks the RS256 app JWT in the Bearer header: signature,
// iss, iat and exp. The error message is safe to return to the caller.
func (s *Server) verifyAppJWT(r *http.Request) error {
	if s.cfg.AppPublicKey == nil {
		return errors.New("GitHub App authentication is not configured")
	}
	raw := authToken(r, "Bearer")
	if raw == "" {
		return errors.New("a JSON web token is required (Authorization: Bearer <jwt>)")
	}
	claims := &jwt.RegisteredClaims{}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation())
	if _, err := parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) {
		return s.cfg.AppPublicKey, nil
	}); err != nil {
		return errors.New("a JSON web token could not be decoded or its signature is invalid")
	}
	now := s.now()
	switch {
	case claims.ExpiresAt == nil:
		return errors.New("'Expiration time' claim ('exp') is missing")
	case !now.Before(claims.ExpiresAt.Time):
		return errors.New("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
	case claims.ExpiresAt.Time.After(now.Add(appJWTMaxLifetime + clockDrift)):
		return errors.New("'Expiration time' claim ('exp') is too far in the future")
	case claims.IssuedAt == nil:
		return errors.New("'Issued at' claim ('iat') is missing")
	case claims.IssuedAt.Time.After(now.Add(clockDrift)):
		return errors.New("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued")
	case !s.appIssuers[claims.Issuer]:
		return fmt.Errorf("'Issuer' claim ('iss') %q does not match this GitHub App", claims.Issuer)
	}
	return nil
}

// adminClaims is the admin JWT handed out by runner-registration.
type adminClaims struct {
	Scope string `json:"scope"`
	jwt.RegisteredClaims
}

func (s *Server) signAdminToken(scope string) (string, time.Time, error) {
	now := s.now()
	exp := now.Add(s.cfg.AdminTokenTTL)
	claims := adminClaims{
		Scope: scope,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "actionsfake",
			Subject:   scope,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-clockDrift)),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        randomHex(8),
		},
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.adminSecret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign admin token: %w", err)
	}
	return tok, exp, nil
}

func (s *Server) verifyAdminToken(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("missing bearer token")
	}
	claims := &adminClaims{}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithoutClaimsValidation())
	if _, err := parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) {
		return s.adminSecret, nil
	}); err != nil {
		return "", errors.New("invalid token")
	}
	if claims.ExpiresAt == nil || !s.now().Before(claims.ExpiresAt.Time) {
		return "", errors.New("token expired")
	}
	if claims.Scope == "" {
		return "", errors.New("token has no scope")
	}
	return claims.Scope, nil
}

// adminHandler is an Actions service handler that runs with the caller's scope.
type adminHandler func(w http.ResponseWriter, r *http.Request, scope string)

// admin checks api-version and the admin JWT before calling h.
func (s *Server) admin(h adminHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.checkAPIVersion(w, r) {
			return
		}
		scope, err := s.verifyAdminToken(authToken(r, "Bearer"))
		if err != nil {
			writeActionsError(w, http.StatusUnauthorized, exUnauthorized, "%s", err)
			return
		}
		h(w, r, scope)
	}
}

// checkAPIVersion requires ?api-version=... on every Actions service call.
func (s *Server) checkAPIVersion(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Query().Get("api-version") != "" {
		return true
	}
	s.mu.Lock()
	s.violate(ViolationMissingAPIVersion, "%s %s", r.Method, r.URL.Path)
	s.mu.Unlock()
	writeActionsError(w, http.StatusBadRequest, exInvalidAPIVersion, "the api-version query parameter is required")
	return false
}
