package policy

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Rules for Firestore's indexes, held to what shared/store declares of its
// queries (store.Collections, EqualityFields, Indexes): nothing is indexed
// that no query uses, and no index takes a time field ahead of the shard,
// since Firestore caps writes to a collection with a sequentially indexed
// field near 500 a second per index range
// (https://cloud.google.com/firestore/native/docs/solutions/shard-timestamp).
var indexRules = []rule{
	{"unqueried fields have no single-field index", unqueriedExempted},
	{"time fields are indexed only behind the shard", timesSharded},
	{"the store's queries have their composite indexes", queriesIndexed},
	{"single-field configurations fit Firestore's quota", fieldConfigsFit},
}

// maxFieldConfigs is Firestore's limit of single-field index configurations
// (exemptions and TTL policies) per database
// (https://cloud.google.com/firestore/quotas#indexes).
const maxFieldConfigs = 200

// exempted returns the collection/field paths whose single-field indexes
// the plan turns off: an index_config block with no index in it.
func exempted(p *plan) map[string]bool {
	out := map[string]bool{}
	for _, r := range p.ofType("google_firestore_field") {
		if c := block(r.Values, "index_config"); c != nil && len(list(c, "indexes")) == 0 {
			out[str(r.Values, "collection")+"/"+str(r.Values, "field")] = true
		}
	}
	return out
}

// fieldsOf returns a collection's top-level fields and their types.
func fieldsOf(doc any) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	typ := reflect.TypeOf(doc)
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("firestore"), ",")
		if name != "" && name != "-" {
			out[name] = typ.Field(i).Type
		}
	}
	return out
}

// typeAt returns the type of a dotted field path of a collection's
// documents, or nil when the store writes no such field.
func typeAt(doc any, path string) reflect.Type {
	typ := reflect.TypeOf(doc)
	for _, part := range strings.Split(path, ".") {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return nil
		}
		t, ok := fieldsOf(reflect.Zero(typ).Interface())[part]
		if !ok {
			return nil
		}
		typ = t
	}
	return typ
}

var timeType = reflect.TypeOf(time.Time{})

// holdsTime reports whether values of typ are, or contain, a time.
func holdsTime(typ reflect.Type) bool {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
	}
	if typ == timeType {
		return true
	}
	if typ.Kind() != reflect.Struct {
		return false
	}
	for _, t := range fieldsOf(reflect.Zero(typ).Interface()) {
		if holdsTime(t) {
			return true
		}
	}
	return false
}

// indexed lists, per collection, the top-level fields the plan leaves with
// Firestore's automatic single-field indexes.
func indexed(p *plan) map[string][]string {
	ex := exempted(p)
	out := map[string][]string{}
	for coll, doc := range store.Collections {
		for name := range fieldsOf(doc) {
			if !ex[coll+"/"+name] {
				out[coll] = append(out[coll], name)
			}
		}
		sort.Strings(out[coll])
	}
	return out
}

func unqueriedExempted(p *plan) []string {
	var out []string
	for coll, fields := range indexed(p) {
		for _, f := range fields {
			if !slices.Contains(store.EqualityFields[coll], f) {
				out = append(out, fmt.Sprintf("%s.%s keeps its single-field indexes, but no query uses them: add a google_firestore_field exemption (index_config {})", coll, f))
			}
		}
	}
	sort.Strings(out)
	return out
}

// compositeIndex is a planned google_firestore_index.
type compositeIndex struct {
	address, collection string
	fields              []string
}

func composites(p *plan) []compositeIndex {
	var out []compositeIndex
	for _, r := range p.ofType("google_firestore_index") {
		ix := compositeIndex{address: r.Address, collection: str(r.Values, "collection")}
		for _, f := range list(r.Values, "fields") {
			if path := str(f, "field_path"); path != "__name__" {
				ix.fields = append(ix.fields, path)
			}
		}
		out = append(out, ix)
	}
	return out
}

func timesSharded(p *plan) []string {
	var out []string
	for coll, fields := range indexed(p) {
		for _, f := range fields {
			if holdsTime(fieldsOf(store.Collections[coll])[f]) {
				out = append(out, fmt.Sprintf("%s.%s is a time field with single-field indexes: unsharded, its writes near now cap the collection at ~500/s", coll, f))
			}
		}
	}
	for _, ix := range composites(p) {
		doc, ok := store.Collections[ix.collection]
		if !ok {
			out = append(out, fmt.Sprintf("%s indexes collection %q, which shared/store does not write", ix.address, ix.collection))
			continue
		}
		for i, f := range ix.fields {
			typ := typeAt(doc, f)
			if typ == nil {
				out = append(out, fmt.Sprintf("%s indexes %s.%s, which shared/store does not write", ix.address, ix.collection, f))
			} else if holdsTime(typ) && (i == 0 || ix.fields[0] != "shard") {
				out = append(out, fmt.Sprintf("%s indexes the time field %s.%s without the shard first: an unsharded time field", ix.address, ix.collection, f))
			}
		}
	}
	sort.Strings(out)
	return out
}

func queriesIndexed(p *plan) []string {
	have := composites(p)
	var out []string
	for _, want := range store.Indexes {
		if !slices.ContainsFunc(have, func(ix compositeIndex) bool {
			return ix.collection == want.Collection && slices.Equal(ix.fields, want.Fields)
		}) {
			out = append(out, fmt.Sprintf("no google_firestore_index on %s (%s): the store's query fails with FAILED_PRECONDITION", want.Collection, strings.Join(want.Fields, ", ")))
		}
	}
	return out
}

func fieldConfigsFit(p *plan) []string {
	if n := len(p.ofType("google_firestore_field")); n > maxFieldConfigs {
		return []string{fmt.Sprintf("%d google_firestore_field resources: Firestore allows %d single-field configurations a database, the apply fails past them", n, maxFieldConfigs)}
	}
	return nil
}

// TestIndexes checks the real plan and lists what stays indexed.
func TestIndexes(t *testing.T) {
	p := realPlan(t)
	for coll, fields := range indexed(p) {
		t.Logf("%s: single-field indexes on %v", coll, fields)
	}
	for _, ix := range composites(p) {
		t.Logf("%s: composite index on (%s)", ix.collection, strings.Join(ix.fields, ", "))
	}
	checkPlan(t, p, indexRules)
}

// indexPlan is a plan with what the store declares: every field exempted
// but the equality ones, and the composite indexes.
func indexPlan() *plan {
	p := &plan{}
	for coll, doc := range store.Collections {
		for name := range fieldsOf(doc) {
			if !slices.Contains(store.EqualityFields[coll], name) {
				p.resources = append(p.resources, resource{Address: "google_firestore_field." + coll + "_" + name, Type: "google_firestore_field", Mode: "managed",
					Values: map[string]any{"collection": coll, "field": name, "index_config": []any{map[string]any{"indexes": []any{}}}}})
			}
		}
	}
	for i, ix := range store.Indexes {
		var fields []any
		for _, f := range ix.Fields {
			fields = append(fields, map[string]any{"field_path": f, "order": "ASCENDING"})
		}
		p.resources = append(p.resources, resource{Address: fmt.Sprintf("google_firestore_index.i%d", i), Type: "google_firestore_index", Mode: "managed",
			Values: map[string]any{"collection": ix.Collection, "fields": fields}})
	}
	return p
}

// TestIndexFixtures runs each rule on the declared plan and on one with a
// violation planted for it.
func TestIndexFixtures(t *testing.T) {
	good := indexPlan()
	broken := indexPlan()
	var kept []resource
	for _, r := range broken.resources {
		// A new time field nobody exempted, and an unqueried one.
		if f := str(r.Values, "field"); str(r.Values, "collection") == "users" && (f == "lastSyncAt" || f == "cursor") {
			continue
		}
		// The notice index, dropped.
		if r.Type == "google_firestore_index" && str(r.Values, "collection") == "users" && len(list(r.Values, "fields")) == 2 &&
			str(list(r.Values, "fields")[1], "field_path") == "notice.at" {
			continue
		}
		kept = append(kept, r)
	}
	broken.resources = append(kept,
		resource{Address: "google_firestore_index.by_updated_at", Type: "google_firestore_index", Mode: "managed",
			Values: map[string]any{"collection": "users", "fields": []any{map[string]any{"field_path": "status"}, map[string]any{"field_path": "updatedAt"}}}},
		resource{Address: "google_firestore_index.by_nothing", Type: "google_firestore_index", Mode: "managed",
			Values: map[string]any{"collection": "users", "fields": []any{map[string]any{"field_path": "shard"}, map[string]any{"field_path": "noSuchField"}}}})
	for i := range maxFieldConfigs {
		broken.resources = append(broken.resources, resource{Address: fmt.Sprintf("google_firestore_field.extra%d", i), Type: "google_firestore_field", Mode: "managed",
			Values: map[string]any{"collection": "users", "field": "status", "index_config": []any{map[string]any{"indexes": []any{map[string]any{"order": "ASCENDING"}}}}}})
	}
	tests := []fixture{
		{"unqueried fields have no single-field index", []string{"users.cursor keeps its single-field indexes", "users.lastSyncAt keeps"}},
		{"time fields are indexed only behind the shard", []string{
			"users.lastSyncAt is a time field with single-field indexes",
			"google_firestore_index.by_updated_at indexes the time field users.updatedAt without the shard first",
			"google_firestore_index.by_nothing indexes users.noSuchField, which shared/store does not write",
		}},
		{"the store's queries have their composite indexes", []string{"no google_firestore_index on users (shard, notice.at)"}},
		{"single-field configurations fit Firestore's quota", []string{"Firestore allows 200 single-field configurations"}},
	}
	if len(tests) != len(indexRules) {
		t.Fatalf("%d fixture cases for %d rules", len(tests), len(indexRules))
	}
	for i, tc := range tests {
		r := indexRules[i]
		t.Run(tc.rule, func(t *testing.T) {
			if r.name != tc.rule {
				t.Fatalf("case %d is for rule %q, want %q", i, tc.rule, r.name)
			}
			if got := r.check(good); len(got) != 0 {
				t.Errorf("declared plan: got violations\n  %s\nwant none", strings.Join(got, "\n  "))
			}
			got := strings.Join(r.check(broken), "\n")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("broken plan: got violations\n%s\nwant one containing %q", got, w)
				}
			}
		})
	}
}
