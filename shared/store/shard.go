package store

import (
	"context"
	"fmt"
	"hash/fnv"

	"cloud.google.com/go/firestore"
)

// ShardCount is how many shards the users' time fields are split into.
// Firestore limits writes to a collection whose indexed field takes
// sequential values (a time near "now") to about 500 a second per index
// range, and lifts it to 500×n when each index on the time field starts
// with a shard field of n values
// (https://cloud.google.com/firestore/native/docs/solutions/shard-timestamp).
// A user's syncDueAt is written near now at every sync's lease and again at
// its end, watchExpiration and renewAt at every renewal: at 1M users and 50
// messages a user a day, a daytime peak of 3× the average is ~1,750 syncs,
// ~3,500 sequential writes a second; 16 shards take 8,000, leaving more than
// 2× of headroom, and each shard is the unit renew's fan-out hands out, so
// up to 16 invocations share a pass. Changing it re-shards every record
// (AssignShards) and needs the renew function and its indexes redeployed.
const ShardCount = 16

// ShardOf returns the shard of the user (or document) with key, from a hash
// of it: keys are already hashes, but hashing again keeps the spread even
// whatever a key looks like.
func ShardOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % ShardCount)
}

// Shards is the half-open range [From, To) of shards one invocation walks.
type Shards struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// AllShards is every shard.
func AllShards() Shards { return Shards{0, ShardCount} }

// Valid reports whether the range is a non-empty part of 0..ShardCount.
func (r Shards) Valid() bool { return 0 <= r.From && r.From < r.To && r.To <= ShardCount }

// Split divides every shard into n ranges as equal as they can be (n is
// capped at ShardCount; below 1, one range).
func Split(n int) []Shards {
	n = min(max(n, 1), ShardCount)
	out := make([]Shards, 0, n)
	for i := range n {
		out = append(out, Shards{i * ShardCount / n, (i + 1) * ShardCount / n})
	}
	return out
}

// noShard marks a record read without a shard field (written before there
// were shards): the next write of the record gives it its shard.
const noShard = -1

// shardOf returns the shard field's value as decoded, or noShard.
func shardOf(snap *firestore.DocumentSnapshot) int {
	v, err := snap.DataAt("shard")
	if err != nil {
		return noShard
	}
	n, ok := v.(int64)
	if !ok {
		return noShard
	}
	return int(n)
}

// AssignShards gives every record after `after` (by key), up to limit of
// them, the shard of its key where it lacks it or has another: the
// migration of records written before shards, which no sharded query finds
// until then (any write gives a record its shard too). It returns the last
// key looked at ("" when none was left) and how many records changed.
func (s *Store) AssignShards(ctx context.Context, after string, limit int) (string, int, error) {
	users, err := s.List(ctx, after, limit)
	if err != nil {
		return "", 0, err
	}
	changed := 0
	for _, u := range users {
		if u.Shard == ShardOf(u.Key) {
			continue
		}
		// Update writes the shard of the key whatever fn changes.
		if _, err := s.Update(ctx, u.Key, func(*User) error { return nil }); err != nil {
			return "", changed, fmt.Errorf("assign shard of %s: %w", u.Key, err)
		}
		changed++
	}
	if len(users) < limit {
		return "", changed, nil
	}
	return users[len(users)-1].Key, changed, nil
}
