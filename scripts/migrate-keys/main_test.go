package main

import (
	"bytes"
	"context"
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
	if b, err := users.Get(ctx, store.Key(ben)); err != nil || b.Status != store.Active {
		t.Errorf("the revoked user was changed: %+v, %v", b, err)
	}

	out.Reset()
	if err := run(ctx, nil, config.FromMap(env), &out); err != nil || !strings.Contains(out.String(), "moved 0, finished 0 earlier moves, 1 waiting") {
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

	if err := run(ctx, []string{"extra"}, config.FromMap(env), &out); err == nil {
		t.Error("an argument was accepted")
	}
	if err := run(ctx, nil, config.FromMap(map[string]string{}), &out); err == nil || !strings.Contains(err.Error(), "PROJECT_ID") {
		t.Errorf("no settings: %v", err)
	}
}
