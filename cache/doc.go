// Package cache is the gateway's response cache: the RFC 9111 rules of a shared cache
// (what may be stored, for how long, which stored answer serves which request), the
// cache key with its Vary variants, and two stores — Redis, shared by every gateway
// replica, and a memory store bounded by bytes with LRU eviction.
//
// The package knows nothing of the proxy: the gateway asks it to classify a request,
// to look up a stored answer, to judge whether an upstream answer may be stored, and to
// store it. Concurrent misses for one key are coalesced through Join/Finish so that one
// request goes upstream per replica.
//
// Entries are immutable once built: a stored *Entry may be served to many requests at
// once, so nothing may write into its Header slices or Body.
package cache
