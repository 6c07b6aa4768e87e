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

// TestKeyerAcrossARotation: the newest secret keys new users; every
// secret's key of an account is offered, newest first, so a record keyed
// with the previous one is still found.
func TestKeyerAcrossARotation(t *testing.T) {
	older, newer := []byte(strings.Repeat("o", 32)), []byte(strings.Repeat("n", 32))
	k, err := store.NewKeyer(newer, older)
	if err != nil {
		t.Fatal(err)
	}
	was, _ := store.NewKeyer(older)
	now, _ := store.NewKeyer(newer)
	const sub = "110248495921238986420"
	if got := k.Keys(sub); len(got) != 2 || got[0] != now.Key(sub) || got[1] != was.Key(sub) || k.Key(sub) != now.Key(sub) {
		t.Errorf("Keys = %v, Key = %s; want the newest secret's key first, then the older", got, k.Key(sub))
	}
	if _, err := store.NewKeyer(newer, []byte("short")); err == nil || !strings.Contains(err.Error(), "key 2 of 2") {
		t.Errorf("NewKeyer with a short second key = %v, want it named", err)
	}
	if _, err := store.NewKeyer(); err == nil {
		t.Error("NewKeyer without a secret succeeded")
	}
}
