package webhooksig

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The published test vector of the Standard Webhooks reference libraries
// (javascript/src/webhook.test.ts, php/tests/WebhookTest.php, "sign function works").
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

	otherSecret = "whsec_c2Vjb25kLXNlY3JldC1rZXktZm9yLXJvdGF0aW9u" // "second-secret-key-for-rotation"
)

func mustParse(t *testing.T, s string) *Keyring {
	t.Helper()
	k, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return k
}

func TestSignMatchesPublishedVector(t *testing.T) {
	got, err := mustParse(t, vectorSecret).Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Errorf("Sign(vector) = %q, want %q", got, vectorSignature)
	}
}

func TestVerify(t *testing.T) {
	now := time.Now()
	body := []byte(`{"specversion":"1","type":"gmail.message.received","id":"abc"}`)
	signed := func(secrets string, ts time.Time) http.Header {
		h, err := mustParse(t, secrets).Header("evt_1", ts, body)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	vector := http.Header{}
	vector.Set(HeaderID, vectorID)
	vector.Set(HeaderTimestamp, strconv.Itoa(vectorTimestamp))
	vector.Set(HeaderSignature, vectorSignature)

	tests := []struct {
		name     string
		verifier string
		header   http.Header
		body     []byte
		want     error // nil means valid
	}{
		{"round trip", vectorSecret, signed(vectorSecret, now), body, nil},
		{"rotation: old receiver key among two signatures", vectorSecret, signed(otherSecret+" "+vectorSecret, now), body, nil},
		{"rotation: receiver holds both keys", otherSecret + "\n" + vectorSecret, signed(vectorSecret, now), body, nil},
		{"altered body", vectorSecret, signed(vectorSecret, now), append([]byte(nil), append(body, ' ')...), ErrNoMatch},
		{"wrong secret", otherSecret, signed(vectorSecret, now), body, ErrNoMatch},
		{"old timestamp", vectorSecret, signed(vectorSecret, now.Add(-6*time.Minute)), body, ErrTooOld},
		{"future timestamp", vectorSecret, signed(vectorSecret, now.Add(6*time.Minute)), body, ErrTooNew},
		{"published vector is now too old", vectorSecret, vector, []byte(vectorBody), ErrTooOld},
		{"missing signature", vectorSecret, func() http.Header { h := signed(vectorSecret, now); h.Del(HeaderSignature); return h }(), body, ErrMissing},
		{"unparsable timestamp", vectorSecret, func() http.Header { h := signed(vectorSecret, now); h.Set(HeaderTimestamp, "soon"); return h }(), body, ErrBadTimestamp},
		{"changed id", vectorSecret, func() http.Header { h := signed(vectorSecret, now); h.Set(HeaderID, "evt_2"); return h }(), body, ErrNoMatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := mustParse(t, tc.verifier).Verify(tc.body, tc.header)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestHeaderCarriesOneSignaturePerKey(t *testing.T) {
	ts := time.Unix(vectorTimestamp, 0)
	h, err := mustParse(t, vectorSecret+"  "+otherSecret).Header(vectorID, ts, []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	sigs := strings.Split(h.Get(HeaderSignature), " ")
	if len(sigs) != 2 || sigs[0] != vectorSignature || !strings.HasPrefix(sigs[1], "v1,") {
		t.Errorf("signature header = %q, want %q then a second v1 signature", h.Get(HeaderSignature), vectorSignature)
	}
	if got, want := h.Get(HeaderID), vectorID; got != want {
		t.Errorf("webhook-id = %q, want %q", got, want)
	}
	if got, want := h.Get(HeaderTimestamp), strconv.Itoa(vectorTimestamp); got != want {
		t.Errorf("webhook-timestamp = %q, want %q", got, want)
	}
}

func TestParseRejectsBadSecrets(t *testing.T) {
	const secretPart = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	tests := []struct {
		name, secrets, wantErr string
	}{
		{"empty", "  \n", "empty"},
		{"no prefix", secretPart, "key 1 of 1: missing whsec_ prefix"},
		{"second key without prefix", vectorSecret + " " + secretPart, "key 2 of 2: missing whsec_ prefix"},
		{"not base64", "whsec_" + secretPart + "!!", "key 1 of 1: not standard base64"},
		{"too short", "whsec_c2hvcnQ=", "key 1 of 1: 5 bytes, want 24 to 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Parse(tc.secrets)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse = %v, %v; want error containing %q", k, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secretPart) || strings.Contains(err.Error(), "c2hvcnQ") {
				t.Errorf("error %q reveals the secret", err)
			}
		})
	}
}

func TestSignRejectsAmbiguousID(t *testing.T) {
	k := mustParse(t, vectorSecret)
	for _, id := range []string{"", "a.b"} {
		if sig, err := k.Sign(id, time.Now(), []byte("{}")); err == nil {
			t.Errorf("Sign(id %q) = %q, want error", id, sig)
		}
	}
}
