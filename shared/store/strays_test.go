package store_test

import (
	"context"
	"testing"
	"time"
)

// Stray pushes keep the highest id per address, are taken once, and are
// seen by HasStrays only while recent.
func TestStrayPushes(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Now()
	if ok, err := s.HasStrays(ctx, now.Add(-time.Hour)); err != nil || ok {
		t.Fatalf("HasStrays before any = %v, %v", ok, err)
	}
	for _, h := range []int64{40, 90, 12} {
		if err := s.KeepStray(ctx, "New@Example.com", h, now); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.HasStrays(ctx, now.Add(-time.Hour)); err != nil || !ok {
		t.Fatalf("HasStrays = %v, %v; want true", ok, err)
	}
	if ok, err := s.HasStrays(ctx, now.Add(time.Hour)); err != nil || ok {
		t.Fatalf("HasStrays after them = %v, %v; want false", ok, err)
	}
	if h, err := s.TakeStray(ctx, "other@example.com"); err != nil || h != 0 {
		t.Fatalf("TakeStray of another address = %d, %v; want 0", h, err)
	}
	if h, err := s.TakeStray(ctx, "new@example.com"); err != nil || h != 90 {
		t.Fatalf("TakeStray = %d, %v; want 90", h, err)
	}
	if h, err := s.TakeStray(ctx, "new@example.com"); err != nil || h != 0 {
		t.Fatalf("second TakeStray = %d, %v; want 0", h, err)
	}
}
