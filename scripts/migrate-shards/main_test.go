package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func TestRunGivesOldRecordsTheirShard(t *testing.T) {
	project := testenv.Project(t)
	fs := testenv.Firestore(t, project)
	ctx := context.Background()
	for i := range page + 5 { // more than a page
		key := store.Key(strings.Repeat("x", i+1) + "@example.com")
		if _, err := fs.Collection("users").Doc(key).Set(ctx, map[string]any{"status": store.Active}); err != nil {
			t.Fatal(err)
		}
	}
	env := config.FromMap(map[string]string{"PROJECT_ID": project})
	var out bytes.Buffer
	if err := run(ctx, nil, env, &out); err != nil || !strings.Contains(out.String(), "305 records") {
		t.Fatalf("run = %v, %q; want 305 records given their shard", err, out.String())
	}
	out.Reset()
	if err := run(ctx, nil, env, &out); err != nil || !strings.Contains(out.String(), "0 records") {
		t.Fatalf("second run = %v, %q; want nothing left to change", err, out.String())
	}
	if err := run(ctx, []string{"extra"}, env, &out); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("run with an argument = %v, want the usage", err)
	}
}
