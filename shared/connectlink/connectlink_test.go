package connectlink_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/connectlink"
)

var policy = connectlink.Policy{ReturnOrigins: []string{"https://app.example.com"}}

func TestCheckReportsEveryProblem(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	ok := connectlink.Request{AppRef: "user 1", ExpectedDomain: "Corp.Example", SuccessURL: "https://app.example.com/ok", ErrorURL: "https://app.example.com/err"}
	l, err := policy.Check(ok, exp)
	if err != nil || l.AppRef != "user 1" || l.Domain != "corp.example" || !l.Expires.Equal(exp) {
		t.Fatalf("Check(valid) = %+v, %v", l, err)
	}
	for _, tc := range []struct {
		name string
		r    connectlink.Request
		want []string
	}{
		{"empty", connectlink.Request{}, []string{"appRef is required"}},
		{"long ref", connectlink.Request{AppRef: strings.Repeat("a", 257)}, []string{"longer than 256"}},
		{"control in ref", connectlink.Request{AppRef: "a\x00b"}, []string{"printable"}},
		{"bad address and domain", connectlink.Request{AppRef: "a", ExpectedAddress: "Alice <a@example.com>", ExpectedDomain: "-x"}, []string{"expectedAddress", "expectedDomain", "not both"}},
		{"one URL", connectlink.Request{AppRef: "a", SuccessURL: "https://app.example.com/"}, []string{"both successUrl and errorUrl"}},
		{"foreign URLs", connectlink.Request{AppRef: "a", SuccessURL: "https://evil.example/", ErrorURL: "https://app.example.com@evil.example/"}, []string{"successUrl: origin", "errorUrl: must not carry"}},
	} {
		_, err := policy.Check(tc.r, exp)
		var probs connectlink.Problems
		if !errors.As(err, &probs) {
			t.Errorf("%s: Check = %v, want Problems", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want it to say %q", tc.name, err, w)
			}
		}
	}
}

func TestSignedLinks(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	now := time.Unix(1_800_000_000, 0)
	r := connectlink.Request{AppRef: "u-1", ExpectedAddress: "a@example.com", SuccessURL: "https://app.example.com/ok", ErrorURL: "https://app.example.com/err"}
	token := connectlink.Sign(key, r, now.Add(30*time.Minute), "nonce-0123456789abcdef")
	l, err := policy.Verify([][]byte{key}, token, now)
	if err != nil || !l.Signed || l.ID == "" || l.AppRef != "u-1" || l.Address != "a@example.com" {
		t.Fatalf("Verify = %+v, %v", l, err)
	}
	if again, _ := policy.Verify([][]byte{key}, connectlink.Sign(key, r, now.Add(time.Minute), "nonce-0123456789abcdef"), now); again.ID != l.ID {
		t.Error("the same nonce gave another id: a link could be used twice")
	}
	if _, err := policy.Verify([][]byte{key}, token, now.Add(30*time.Minute)); !errors.Is(err, connectlink.ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	for name, bad := range map[string]string{
		"other key":        connectlink.Sign([]byte(strings.Repeat("x", 32)), r, now.Add(time.Minute), "nonce-0123456789abcdef"),
		"no signature":     strings.Split(token, ".")[0],
		"too far ahead":    connectlink.Sign(key, r, now.Add(25*time.Hour), "nonce-0123456789abcdef"),
		"short nonce":      connectlink.Sign(key, r, now.Add(time.Minute), "n"),
		"short key":        connectlink.Sign(key[:8], r, now.Add(time.Minute), "nonce-0123456789abcdef"),
		"spliced":          strings.Split(connectlink.Sign(key, connectlink.Request{AppRef: "other"}, now.Add(time.Minute), "nonce-0123456789abcdef"), ".")[0] + "." + strings.Split(token, ".")[1],
		"not allowed URLs": connectlink.Sign(key, connectlink.Request{AppRef: "a", SuccessURL: "https://evil.example/", ErrorURL: "https://evil.example/"}, now.Add(time.Minute), "nonce-0123456789abcdef"),
	} {
		k := key
		if name == "short key" {
			k = key[:8]
		}
		if _, err := policy.Verify([][]byte{k}, bad, now); err == nil {
			t.Errorf("%s: Verify accepted it", name)
		}
	}
}

// TestSignedLinksAcrossARotation: a link signed with the previous key
// verifies while the secret holds it beside the new one, and not once it is
// dropped; a link of a key the secret never held does not.
func TestSignedLinksAcrossARotation(t *testing.T) {
	previous, current := []byte(strings.Repeat("p", 32)), []byte(strings.Repeat("c", 32))
	now := time.Unix(1_800_000_000, 0)
	r := connectlink.Request{AppRef: "u-1"}
	rotating := [][]byte{current, previous}
	for name, key := range map[string][]byte{"current": current, "previous": previous} {
		if _, err := policy.Verify(rotating, connectlink.Sign(key, r, now.Add(time.Minute), "nonce-0123456789abcdef"), now); err != nil {
			t.Errorf("signed with the %s key: %v", name, err)
		}
	}
	oldLink := connectlink.Sign(previous, r, now.Add(time.Minute), "nonce-0123456789abcdef")
	if _, err := policy.Verify([][]byte{current}, oldLink, now); !errors.Is(err, connectlink.ErrForged) {
		t.Errorf("previous key dropped: %v, want ErrForged", err)
	}
	unknown := connectlink.Sign([]byte(strings.Repeat("u", 32)), r, now.Add(time.Minute), "nonce-0123456789abcdef")
	if _, err := policy.Verify(rotating, unknown, now); !errors.Is(err, connectlink.ErrForged) {
		t.Errorf("unknown key: %v, want ErrForged", err)
	}
	if _, err := policy.Verify(nil, oldLink, now); !errors.Is(err, connectlink.ErrForged) {
		t.Errorf("no keys: %v, want ErrForged", err)
	}
}

// TestSignedLinkWithADuplicateKey: a payload naming a field twice (in any
// case, at any depth) is refused with an error that says so, whichever of
// the two would have been read.
func TestSignedLinkWithADuplicateKey(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	now := time.Unix(1_800_000_000, 0)
	sign := func(payload string) string {
		p := base64.RawURLEncoding.EncodeToString([]byte(payload))
		m := hmac.New(sha256.New, key)
		m.Write([]byte("gmailwatch connect link\x00" + p))
		return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	tail := `"exp":1800000600,"nonce":"nonce-0123456789abcdef"}`
	if l, err := policy.Verify([][]byte{key}, sign(`{"appRef":"victim",`+tail), now); err != nil || l.AppRef != "victim" {
		t.Fatalf("Verify(the same payload without a duplicate) = %+v, %v", l, err)
	}
	for name, payload := range map[string]string{
		"same key":           `{"appRef":"victim","appRef":"attacker",` + tail,
		"other case":         `{"appRef":"victim","APPREF":"attacker",` + tail,
		"expiry twice":       `{"appRef":"a","exp":1800000060,` + tail,
		"nonce twice":        `{"appRef":"a","nonce":"nonce-aaaaaaaaaaaaaaaa",` + tail,
		"move twice":         `{"appRef":"a","move":false,"move":true,` + tail,
		"nested, in a value": `{"appRef":"a","x":{"k":1,"k":2},` + tail,
	} {
		_, err := policy.Verify([][]byte{key}, sign(payload), now)
		if !errors.Is(err, connectlink.ErrForged) || !strings.Contains(err.Error(), "twice") {
			t.Errorf("%s: Verify = %v, want ErrForged saying a field is named twice", name, err)
		}
	}
}

func TestReadPolicy(t *testing.T) {
	r := config.NewReader(config.FromMap(map[string]string{"RETURN_ORIGINS": "https://App.Example.com, http://evil.example, https://x.example/path, https://u:p@y.example"}))
	p := connectlink.ReadPolicy(r)
	if len(p.ReturnOrigins) != 1 || p.ReturnOrigins[0] != "https://app.example.com" {
		t.Errorf("origins = %v", p.ReturnOrigins)
	}
	if err := r.Err(); err == nil || strings.Count(err.Error(), "RETURN_ORIGINS") != 3 {
		t.Errorf("Err = %v, want three RETURN_ORIGINS problems", err)
	}
}
