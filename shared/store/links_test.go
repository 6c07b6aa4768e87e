package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func TestLinksAreUsedOnce(t *testing.T) {
	ctx := context.Background()
	s := store.New(testenv.Firestore(t, testenv.Project(t)), nil)
	stored := store.Link{ID: "stored-1", AppRef: "a", Expires: time.Now().Add(time.Minute)}
	if err := s.CreateLink(ctx, stored); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateLink(ctx, stored); err == nil {
		t.Error("a second link with the same id was created")
	}
	signed := store.Link{ID: "signed-1", AppRef: "b", Signed: true, Expires: time.Now().Add(time.Minute)}
	for _, l := range []store.Link{stored, signed} {
		if err := s.UseLink(ctx, l); err != nil {
			t.Fatalf("first use of %s: %v", l.ID, err)
		}
		if err := s.UseLink(ctx, l); !errors.Is(err, store.ErrLinkUsed) {
			t.Errorf("second use of %s: %v, want ErrLinkUsed", l.ID, err)
		}
		got, err := s.Link(ctx, l.ID)
		if err != nil || got.UsedAt.IsZero() || got.AppRef != l.AppRef {
			t.Errorf("Link(%s) = %+v, %v; want it used", l.ID, got, err)
		}
	}
	if err := s.UseLink(ctx, store.Link{ID: "never-made"}); !errors.Is(err, store.ErrLinkNotFound) {
		t.Errorf("unknown stored link: %v, want ErrLinkNotFound", err)
	}
}

func TestConnectKeepsTheReferenceUnlessMoved(t *testing.T) {
	ctx := context.Background()
	s := store.New(testenv.Firestore(t, testenv.Project(t)), nil)
	c := store.Connection{Email: "r@example.com", AppRef: "one", HistoryID: 5}
	if _, _, err := s.Connect(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.AppRef = "two"
	if _, _, err := s.Connect(ctx, c); !errors.Is(err, store.ErrOtherRef) {
		t.Fatalf("another reference: %v, want ErrOtherRef", err)
	}
	if u, _ := s.Get(ctx, store.Key(c.Email)); u.AppRef != "one" {
		t.Errorf("appRef = %q after a refused connect, want one", u.AppRef)
	}
	c.Move = true
	if u, _, err := s.Connect(ctx, c); err != nil || u.AppRef != "two" {
		t.Errorf("move: %+v, %v", u, err)
	}
	byRef, err := s.ByAppRef(ctx, "two", 10)
	if err != nil || len(byRef) != 1 || byRef[0].Email != c.Email {
		t.Errorf("ByAppRef = %+v, %v", byRef, err)
	}
	if u, err := s.ByEmail(ctx, "R@example.com"); err != nil || u.Key != store.Key(c.Email) {
		t.Errorf("ByEmail = %+v, %v", u, err)
	}
}
