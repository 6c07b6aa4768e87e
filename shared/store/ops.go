package store

import (
	"context"
	"sync/atomic"
)

// Ops are the Firestore operations some calls cost, counted the way
// Firestore bills them: documents read (a query at least one, a count
// aggregation one per 1,000 entries), documents written, documents deleted,
// and transactions run (every attempt; a retried one reads again).
type Ops struct {
	Reads        int64 `json:"reads"`
	Writes       int64 `json:"writes"`
	Deletes      int64 `json:"deletes"`
	Transactions int64 `json:"transactions"`
}

// Add returns the sum of o and p.
func (o Ops) Add(p Ops) Ops {
	return Ops{o.Reads + p.Reads, o.Writes + p.Writes, o.Deletes + p.Deletes, o.Transactions + p.Transactions}
}

type opsKey struct{}

type opsCounter struct {
	reads, writes, deletes, txs atomic.Int64
	outer                       *opsCounter // a Counting context this one was derived from
}

// Counting returns a context under which the store counts the operations of
// every call made with it (or a context derived from it), and the count so
// far. Counts also go to any Counting context ctx derives from.
func Counting(ctx context.Context) (context.Context, func() Ops) {
	outer, _ := ctx.Value(opsKey{}).(*opsCounter)
	c := &opsCounter{outer: outer}
	return context.WithValue(ctx, opsKey{}, c), func() Ops {
		return Ops{c.reads.Load(), c.writes.Load(), c.deletes.Load(), c.txs.Load()}
	}
}

func count(ctx context.Context, o Ops) {
	c, _ := ctx.Value(opsKey{}).(*opsCounter)
	for ; c != nil; c = c.outer {
		c.reads.Add(o.Reads)
		c.writes.Add(o.Writes)
		c.deletes.Add(o.Deletes)
		c.txs.Add(o.Transactions)
	}
}
