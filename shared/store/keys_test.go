package store_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

func TestKeyerHidesTheAccount(t *testing.T) {
	if _, err := store.NewKeyer([]byte("short")); err == nil {
		t.Error("a short secret was accepted")
	}
	a, _ := store.NewKeyer([]byte(strings.Repeat("a", 32)))
	b, _ := store.NewKeyer([]byte(strings.Repeat("b", 32)))
	const sub = "110248495921238986420"
	k := a.Key(sub)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(k) || k != a.Key(sub) {
		t.Fatalf("Key = %q, want 32 stable hex digits", k)
	}
	for _, other := range []string{a.Key(sub + "1"), b.Key(sub), store.Key(sub)} {
		if other == k {
			t.Errorf("key %s repeats for another account, secret or the unkeyed hash", k)
		}
	}
}
