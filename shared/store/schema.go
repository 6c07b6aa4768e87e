package store

// What the store's queries need of Firestore's indexes, declared beside the
// queries so that terraform/policy can hold the Terraform to it: every
// field of a collection not listed here has its single-field indexes
// exempted (each indexed field costs a write per document write, and one
// whose values are times near now caps the collection's writes at about
// 500 a second, see ShardOf), and every composite index the queries use
// exists, with the shard before any time field.

// Collections maps each collection (or collection group) the store writes
// to a zero value of its documents' type; their firestore tags are the
// fields.
var Collections = map[string]any{
	"users":          User{},
	"messages":       Marker{},
	"connectLinks":   Link{},
	"connectResults": Result{},
	"oauthStates":    usedState{},
	"strayPushes":    strayPush{},
}

// EqualityFields lists, per collection, the fields queried alone by
// equality (ByEmail, ByAppRef, ListStatus, Delegated): their single-field
// index serves them, and none holds a time.
var EqualityFields = map[string][]string{
	"users": {"status", "delegated", "appRef", "email"},
}

// Index is a composite index, its fields in order, all ascending.
type Index struct {
	Collection string
	Fields     []string
}

// Indexes are the composite indexes the paging queries (page) and
// HasStrays use: each starts with the shard.
var Indexes = []Index{
	{"users", []string{"shard", "status", RenewDue}},
	{"users", []string{"shard", "status", SyncDue}},
	{"users", []string{"shard", "status", "watchExpiration"}},
	{"users", []string{"shard", "notice.at"}},
	{"users", []string{"shard", "pendingUntil"}},
	{"strayPushes", []string{"shard", "at"}},
}
