package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

const userKeySecret = "user-key-secret-for-migration-tests-0123456789"

// Legacy users (keyed by address) move to keys derived from their Google
// account id: record, markers and token; the old ones are gone; a user whose
// token is revoked waits; a second run changes nothing.
func mustForm(r *http.Request) url.Values {
	r.ParseForm()
	return r.Form
}

func TestMigrateKeys(t *testing.T) {
	ctx := context.Background()
	project := testenv.Project(t)
	fs := testenv.Firestore(t, project)
	users := store.New(fs, nil)
	sb, err := sandbox.Start(ctx, sandbox.Options{ProjectID: project, ClientID: "mig", ClientSecret: "mig-secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	for id, v := range map[string]string{"oauth-client-secret": "mig-secret", "user-key-secret": userKeySecret} {
		if err := sb.PutSecret(ctx, project, id, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := vault.New(ctx, project, sb.SecretManagerAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	legacy := func(email string) string {
		rt, err := sb.Connect(email, gmailclient.ScopeMetadata)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.PutRefreshToken(ctx, store.Key(email), rt); err != nil {
			t.Fatal(err)
		}
		if _, _, err := users.Connect(ctx, store.Connection{Email: email, AppRef: "ref-" + email, HistoryID: 77}); err != nil {
			t.Fatal(err)
		}
		// As written before the account id existed: no sub field at all.
		if _, err := fs.Collection("users").Doc(store.Key(email)).Update(ctx, []firestore.Update{{Path: "sub", Value: firestore.Delete}}); err != nil {
			t.Fatal(err)
		}
		return rt
	}
	const ann, ben = "ann@example.com", "ben@example.com"
	annToken := legacy(ann)
	legacy(ben)
	sb.Revoke(ben)
	if err := users.MarkAnnounced(ctx, store.Key(ann), map[string]store.Marker{"m1": {EventID: "e1", ExpireAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	env := sb.Env()
	env["PROJECT_ID"], env["OAUTH_TOKENINFO_URL"] = project, sb.URL+"/tokeninfo"
	keys, _ := store.NewKeyer([]byte(userKeySecret))
	annKey := keys.Key(googleauth.Subject(ann))

	var out bytes.Buffer
	if err := run(ctx, []string{"-dry-run"}, config.FromMap(env), &out); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if _, err := users.Get(ctx, annKey); err == nil || !strings.Contains(out.String(), "move     "+store.Key(ann)+" -> "+annKey) {
		t.Errorf("dry run moved something, or did not say what it would:\n%s", out.String())
	}

	out.Reset()
	if err := run(ctx, nil, config.FromMap(env), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "moved 1, finished 0 earlier moves, 1 waiting") {
		t.Errorf("report:\n%s", out.String())
	}
	benKey := keys.AddressKey(ben)
	u, err := users.Get(ctx, annKey)
	if err != nil || u.Sub != googleauth.Subject(ann) || u.Email != ann || u.AppRef != "ref-"+ann || u.Cursor != 77 || u.Status != store.Active {
		t.Errorf("moved record = %+v, %v", u, err)
	}
	if _, err := users.Get(ctx, store.Key(ann)); err == nil {
		t.Error("the old record is still there")
	}
	if got, err := v.RefreshToken(ctx, annKey); err != nil || got != annToken {
		t.Errorf("token under the new key: %v", err)
	}
	if _, err := v.RefreshToken(ctx, store.Key(ann)); err == nil {
		t.Error("the old secret, named after the address's hash, is still there")
	}
	if done, _ := users.Announced(ctx, annKey, []string{"m1"}); !done["m1"] {
		t.Error("the announced markers did not move")
	}
	if done, _ := users.Announced(ctx, store.Key(ann), []string{"m1"}); done["m1"] {
		t.Error("the old markers are still there")
	}
	// The revoked user waits under the keyed hash of its address: nothing
	// is named after the plain hash any more, its record is otherwise as it was.
	if b, err := users.Get(ctx, benKey); err != nil || b.Status != store.Active || b.Sub != "" || b.AppRef != "ref-"+ben || b.Email != ben {
		t.Errorf("the waiting user under its keyed name: %+v, %v", b, err)
	}
	if _, err := users.Get(ctx, store.Key(ben)); err == nil {
		t.Error("the waiting user's record is still named after its address's plain hash")
	}
	if _, err := v.RefreshToken(ctx, store.Key(ben)); err == nil {
		t.Error("the waiting user's secret is still named after its address's plain hash")
	}
	if _, err := v.RefreshToken(ctx, benKey); err != nil {
		t.Errorf("the waiting user's token did not move to its keyed name: %v", err)
	}

	out.Reset()
	if err := run(ctx, nil, config.FromMap(env), &out); err != nil || !strings.Contains(out.String(), "moved 0, finished 0 earlier moves, 1 waiting") ||
		strings.Contains(out.String(), "move     ") {
		t.Errorf("second run: %v\n%s", err, out.String())
	}

	// A half-done move (crashed after marking the old record) is finished.
	legacy("cy@example.com")
	cyKey := keys.Key(googleauth.Subject("cy@example.com"))
	if err := users.MoveUser(ctx, store.Key("cy@example.com"), cyKey, googleauth.Subject("cy@example.com")); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, nil, config.FromMap(env), &out); err != nil || !strings.Contains(out.String(), "finished 1 earlier moves") {
		t.Errorf("finishing run: %v\n%s", err, out.String())
	}
	if _, err := users.Get(ctx, store.Key("cy@example.com")); err == nil {
		t.Error("the half-moved old record is still there")
	}

	// Google's tokeninfo may answer without the account id: the user waits
	// (under its keyed name, with its live token), the run goes on, and a
	// later run, given the id, finishes the move.
	dee := "dee@example.com"
	deeToken := legacy(dee)
	noSub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.PostForm(sb.URL+"/tokeninfo", mustForm(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var info map[string]any
		json.NewDecoder(resp.Body).Decode(&info)
		delete(info, "sub")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		json.NewEncoder(w).Encode(info)
	}))
	t.Cleanup(noSub.Close)
	withoutSub := maps.Clone(env)
	withoutSub["OAUTH_TOKENINFO_URL"] = noSub.URL
	out.Reset()
	if err := run(ctx, nil, config.FromMap(withoutSub), &out); err != nil || !strings.Contains(out.String(), "Google did not name its account") {
		t.Fatalf("run with a tokeninfo answer without sub: %v\n%s", err, out.String())
	}
	if got, err := v.RefreshToken(ctx, keys.AddressKey(dee)); err != nil || got != deeToken {
		t.Errorf("dee's live token under its keyed name: %v", err)
	}
	out.Reset()
	if err := run(ctx, nil, config.FromMap(env), &out); err != nil {
		t.Fatal(err)
	}
	deeKey := keys.Key(googleauth.Subject(dee))
	if u, err := users.Get(ctx, deeKey); err != nil || u.Sub != googleauth.Subject(dee) || u.Status != store.Active {
		t.Errorf("dee, once Google named the account: %+v, %v", u, err)
	}
	if _, err := users.Get(ctx, keys.AddressKey(dee)); err == nil {
		t.Error("dee's waiting record is still there after the move")
	}

	// After a rotation of the user-key secret every record is keyed anew
	// with the new one (token and markers too), so the old key can go.
	const rotated = "user-key-secret-after-rotation-0123456789abcdef"
	if err := sb.PutSecret(ctx, project, "user-key-secret", []byte(rotated+" "+userKeySecret)); err != nil {
		t.Fatal(err)
	}
	newKeys, _ := store.NewKeyer([]byte(rotated))
	out.Reset()
	if err := run(ctx, nil, config.FromMap(env), &out); err != nil || !strings.Contains(out.String(), "keyed anew after a rotation") {
		t.Fatalf("run after a rotation: %v\n%s", err, out.String())
	}
	annNew := newKeys.Key(googleauth.Subject(ann))
	if u, err := users.Get(ctx, annNew); err != nil || u.AppRef != "ref-"+ann || u.Status != store.Active {
		t.Errorf("ann keyed anew: %+v, %v", u, err)
	}
	if got, err := v.RefreshToken(ctx, annNew); err != nil || got != annToken {
		t.Errorf("ann's token under the new key: %v", err)
	}
	if done, _ := users.Announced(ctx, annNew, []string{"m1"}); !done["m1"] {
		t.Error("ann's markers did not follow the new key")
	}
	if _, err := users.Get(ctx, annKey); err == nil {
		t.Error("ann's record under the old secret's key is still there")
	}
	if _, err := users.Get(ctx, newKeys.AddressKey(ben)); err != nil {
		t.Errorf("the waiting user is not under the new secret's keyed name: %v", err)
	}

	if err := run(ctx, []string{"extra"}, config.FromMap(env), &out); err == nil {
		t.Error("an argument was accepted")
	}
	if err := run(ctx, nil, config.FromMap(map[string]string{}), &out); err == nil || !strings.Contains(err.Error(), "PROJECT_ID") {
		t.Errorf("no settings: %v", err)
	}
}
