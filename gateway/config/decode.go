package config

import (
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// decoder turns HCL syntax into Go values and collects every problem on the way.
type decoder struct {
	ctx   *hcl.EvalContext
	diags Diagnostics
}

func (d *decoder) errorf(p Pos, format string, args ...any) {
	d.diags = append(d.diags, Diagnostic{Pos: p, Message: fmt.Sprintf(format, args...)})
}

// addHCL converts HCL's own diagnostics (syntax errors, failed function calls),
// putting prefix (the block and attribute being evaluated, if any) before each message.
func (d *decoder) addHCL(ds hcl.Diagnostics, prefix string) {
	for _, hd := range ds {
		if hd.Severity != hcl.DiagError {
			continue
		}
		var p Pos
		if hd.Subject != nil {
			p = posOf(hd.Subject.Filename, hd.Subject.Start)
		}
		d.diags = append(d.diags, Diagnostic{Pos: p, Message: prefix + hclMessage(hd)})
	}
}

// hclMessage words an HCL diagnostic, replacing the generic "Error in function call"
// for env() with what the user needs to know.
func hclMessage(hd *hcl.Diagnostic) string {
	if extra, ok := hcl.DiagnosticExtra[hclsyntax.FunctionCallDiagExtra](hd); ok && extra.CalledFunctionName() == "env" {
		var missing *missingEnvError
		if err := extra.FunctionCallError(); errors.As(err, &missing) {
			return missing.Error()
		} else if err != nil {
			return "env(): " + err.Error()
		}
	}
	msg := hd.Summary
	if msg != "" {
		msg = strings.ToLower(msg[:1]) + msg[1:]
	}
	if detail := strings.TrimSuffix(hd.Detail, "."); detail != "" {
		msg += ": " + detail
	}
	// HCL writes ranges as FILE:LINE,COL-ENDCOL; point at the start like everything else.
	return hclRange.ReplaceAllString(msg, "$1:$2")
}

var hclRange = regexp.MustCompile(`(:\d+),(\d+)-\d+(?:,\d+)?`)

func posOf(file string, p hcl.Pos) Pos { return Pos{File: file, Line: p.Line, Column: p.Column} }

func rangePos(r hcl.Range) Pos { return posOf(r.Filename, r.Start) }

// loc remembers where a block and its attributes were written, so validation can point
// at them after decoding.
type loc struct {
	what  string // the block as messages name it: `service "users" retry`; "" at the top level
	block Pos
	seen  map[string]bool           // attributes written, valid or not (null is not written)
	attrs map[string]Pos            // attribute name -> position of the name, for valid values
	elems map[string][]Pos          // list attribute -> position of each element
	keys  map[string]map[string]Pos // map attribute -> key -> position of the value
	subs  map[string]*loc           // nested block type (instance: "instance#N") -> its loc
}

func newLoc(what string, p Pos) *loc {
	return &loc{what: what, block: p, seen: map[string]bool{}, attrs: map[string]Pos{}, elems: map[string][]Pos{},
		keys: map[string]map[string]Pos{}, subs: map[string]*loc{}}
}

// has reports whether the attribute was written with a valid, non-null value.
func (l *loc) has(name string) bool { _, ok := l.attrs[name]; return ok }

// invalid reports whether the attribute was written with a value that was reported
// already; checks skip it rather than pile a second message on the first.
func (l *loc) invalid(name string) bool { return l.seen[name] && !l.has(name) }

// at is the attribute's position, or the block's when it was not written.
func (l *loc) at(name string) Pos {
	if p, ok := l.attrs[name]; ok {
		return p
	}
	return l.block
}

// elem is the position of element i of a list attribute, or the attribute's.
func (l *loc) elem(name string, i int) Pos {
	if ps := l.elems[name]; i < len(ps) {
		return ps[i]
	}
	return l.at(name)
}

// key is the position of a map attribute's value under key, or the attribute's.
func (l *loc) key(name, key string) Pos {
	if p, ok := l.keys[name][key]; ok {
		return p
	}
	return l.at(name)
}

// sub is the loc of a nested block; never nil (an absent block yields an empty loc).
func (l *loc) sub(name string) *loc {
	if s, ok := l.subs[name]; ok {
		return s
	}
	return newLoc(l.what+" "+name, l.block)
}

// msg prefixes a message with the block it is about.
func (l *loc) msg(format string, args ...any) string {
	m := fmt.Sprintf(format, args...)
	if l.what == "" {
		return m
	}
	return l.what + ": " + m
}

// schema lists what a block may contain.
type schema struct {
	attrs  []string
	blocks []string // nested block types
	many   []string // nested block types that may repeat; the rest appear at most once
}

// body is one block's content being decoded: known attributes, nested blocks grouped by
// type, and the loc that records positions.
type body struct {
	d      *decoder
	attrs  map[string]*hclsyntax.Attribute
	blocks map[string][]*hclsyntax.Block
	loc    *loc
}

// open checks b against s, reporting unknown attributes and blocks and repeated
// single blocks, and returns the body to decode from.
func (d *decoder) open(b *hclsyntax.Body, header Pos, what string, s schema) *body {
	out := &body{d: d, attrs: map[string]*hclsyntax.Attribute{},
		blocks: map[string][]*hclsyntax.Block{}, loc: newLoc(what, header)}
	for _, a := range sortedAttrs(b) {
		if !slices.Contains(s.attrs, a.Name) {
			msg := fmt.Sprintf("unknown attribute %q", a.Name)
			if slices.Contains(s.blocks, a.Name) {
				msg += fmt.Sprintf("; %s is a block: write %s { … }", a.Name, a.Name)
			} else if sug := suggest(a.Name, s.attrs); sug != "" {
				msg += fmt.Sprintf("; did you mean %q?", sug)
			}
			d.errorf(rangePos(a.NameRange), "%s", out.loc.msg("%s", msg))
			continue
		}
		out.attrs[a.Name] = a
		out.loc.seen[a.Name] = true
	}
	for _, blk := range b.Blocks {
		if !slices.Contains(s.blocks, blk.Type) {
			msg := fmt.Sprintf("unknown block %q", blk.Type)
			if slices.Contains(s.attrs, blk.Type) {
				msg += fmt.Sprintf("; %s is an attribute: write %s = …", blk.Type, blk.Type)
			} else if sug := suggest(blk.Type, s.blocks); sug != "" {
				msg += fmt.Sprintf("; did you mean %q?", sug)
			}
			d.errorf(rangePos(blk.TypeRange), "%s", out.loc.msg("%s", msg))
			continue
		}
		if prev := out.blocks[blk.Type]; len(prev) > 0 && !slices.Contains(s.many, blk.Type) {
			d.errorf(rangePos(blk.TypeRange), "%s", out.loc.msg("duplicate %s block; the first is at %s",
				blk.Type, rangePos(prev[0].TypeRange)))
			continue
		}
		out.blocks[blk.Type] = append(out.blocks[blk.Type], blk)
	}
	return out
}

func sortedAttrs(b *hclsyntax.Body) []*hclsyntax.Attribute {
	as := make([]*hclsyntax.Attribute, 0, len(b.Attributes))
	for _, a := range b.Attributes {
		as = append(as, a)
	}
	slices.SortFunc(as, func(x, y *hclsyntax.Attribute) int { return x.SrcRange.Start.Byte - y.SrcRange.Start.Byte })
	return as
}

// block returns the single nested block of this type, or nil.
func (b *body) block(typ string) *hclsyntax.Block {
	if bs := b.blocks[typ]; len(bs) > 0 {
		return bs[0]
	}
	return nil
}

// noLabels reports a nested block that carries a name it does not take.
func (d *decoder) noLabels(blk *hclsyntax.Block) {
	if len(blk.Labels) > 0 {
		d.errorf(rangePos(blk.LabelRanges[0]), "%s block takes no name", blk.Type)
	}
}

// value evaluates an attribute and converts it to typ, recording its position. ok is
// false when the attribute is absent or null (both mean "use the default") or wrong
// (reported).
func (b *body) value(name string, typ cty.Type, want string) (cty.Value, bool) {
	a, ok := b.attrs[name]
	if !ok {
		return cty.NilVal, false
	}
	v, hd := a.Expr.Value(b.d.ctx)
	if hd.HasErrors() {
		if wantsString(typ) {
			hd = unquotedWords(hd, a.Expr)
		}
		b.d.addHCL(hd, b.loc.msg("%s: ", name))
		return cty.NilVal, false
	}
	if v.IsNull() {
		delete(b.loc.seen, name)
		return cty.NilVal, false
	}
	p := rangePos(a.NameRange)
	if !v.IsWhollyKnown() {
		b.errorf(p, "%s: value is not known", name)
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, typ)
	if err != nil || (typ.IsListType() || typ.IsMapType()) && hasNullElem(cv) {
		b.errorf(p, "%s must be %s, not %s", name, want, typeName(v.Type()))
		return cty.NilVal, false
	}
	b.loc.attrs[name] = p
	b.recordElems(name, a.Expr)
	return cv, true
}

// wantsString reports whether typ is a string or a collection of strings.
func wantsString(typ cty.Type) bool {
	if typ.IsListType() || typ.IsMapType() || typ.IsSetType() {
		typ = typ.ElementType()
	}
	return typ == cty.String
}

// unquotedWords rewords HCL's "Variables not allowed" for a bare word written where a
// string belongs (load_balancer = round_robin, methods = [GET]): the config language has
// no variables, so the word was meant as a string. Only a word that is the whole value,
// a whole list element or a whole map value gets the hint.
func unquotedWords(ds hcl.Diagnostics, e hclsyntax.Expression) hcl.Diagnostics {
	words := map[hcl.Pos]string{}
	add := func(x hclsyntax.Expression) {
		if t, ok := x.(*hclsyntax.ScopeTraversalExpr); ok {
			if w, ok := traversalWord(t.Traversal); ok {
				words[t.Range().Start] = w
			}
		}
	}
	add(e)
	switch e := e.(type) {
	case *hclsyntax.TupleConsExpr:
		for _, x := range e.Exprs {
			add(x)
		}
	case *hclsyntax.ObjectConsExpr:
		for _, it := range e.Items {
			add(it.ValueExpr)
		}
	}
	out := make(hcl.Diagnostics, len(ds))
	for i, d := range ds {
		out[i] = d
		if d.Subject == nil || d.Summary != "Variables not allowed" {
			continue
		}
		if w, ok := words[d.Subject.Start]; ok {
			c := *d
			c.Summary = "a string is written in quotes"
			c.Detail = fmt.Sprintf("%q, not %s", w, w)
			out[i] = &c
		}
	}
	return out
}

// traversalWord spells a traversal of names (round_robin, realm_access.roles) as written.
func traversalWord(t hcl.Traversal) (string, bool) {
	var sb strings.Builder
	for _, step := range t {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			sb.WriteString(s.Name)
		case hcl.TraverseAttr:
			sb.WriteString("." + s.Name)
		default:
			return "", false
		}
	}
	return sb.String(), sb.Len() > 0
}

// recordElems keeps the positions of a literal list's elements or a literal map's values.
func (b *body) recordElems(name string, e hclsyntax.Expression) {
	switch e := e.(type) {
	case *hclsyntax.TupleConsExpr:
		ps := make([]Pos, len(e.Exprs))
		for i, x := range e.Exprs {
			ps[i] = rangePos(x.Range())
		}
		b.loc.elems[name] = ps
	case *hclsyntax.ObjectConsExpr:
		m := map[string]Pos{}
		for _, it := range e.Items {
			k, hd := it.KeyExpr.Value(b.d.ctx)
			if hd.HasErrors() || k.IsNull() || !k.IsKnown() {
				continue
			}
			if ks, err := convert.Convert(k, cty.String); err == nil {
				m[ks.AsString()] = rangePos(it.ValueExpr.Range())
			}
		}
		b.loc.keys[name] = m
	}
}

func hasNullElem(v cty.Value) bool {
	for it := v.ElementIterator(); it.Next(); {
		if _, e := it.Element(); e.IsNull() {
			return true
		}
	}
	return false
}

// typeName names an HCL value's type as a user thinks of it.
func typeName(t cty.Type) string {
	switch {
	case t == cty.String:
		return "a string"
	case t == cty.Number:
		return "a number"
	case t == cty.Bool:
		return "a bool"
	case t.IsTupleType() || t.IsListType() || t.IsSetType():
		return "a list"
	case t.IsObjectType() || t.IsMapType():
		return "a map"
	}
	return t.FriendlyName()
}

// errorf reports a problem in this block at p.
func (b *body) errorf(p Pos, format string, args ...any) {
	b.d.errorf(p, "%s", b.loc.msg(format, args...))
}

func (b *body) str(name string, dst *string) {
	if v, ok := b.value(name, cty.String, "a string"); ok {
		*dst = v.AsString()
	}
}

func (b *body) strs(name string, dst *[]string) {
	if v, ok := b.value(name, cty.List(cty.String), "a list of strings"); ok {
		out := make([]string, 0, v.LengthInt())
		for _, e := range v.AsValueSlice() {
			out = append(out, e.AsString())
		}
		*dst = out
	}
}

func (b *body) strMap(name string, dst *map[string]string) {
	if v, ok := b.value(name, cty.Map(cty.String), "a map of strings"); ok {
		out := make(map[string]string, v.LengthInt())
		for k, e := range v.AsValueMap() {
			out[k] = e.AsString()
		}
		*dst = out
	}
}

func (b *body) boolean(name string, dst *bool) {
	if v, ok := b.value(name, cty.Bool, "true or false"); ok {
		*dst = v.True()
	}
}

func (b *body) float(name string, dst *float64) {
	if v, ok := b.value(name, cty.Number, "a number"); ok {
		f, _ := v.AsBigFloat().Float64()
		*dst = f
	}
}

// whole converts a number to an int64, reporting fractions and overflow.
func (b *body) whole(name string, n *big.Float, p Pos) (int64, bool) {
	if !n.IsInt() {
		b.errorf(p, "%s must be a whole number, not %s", name, n.Text('g', -1))
		return 0, false
	}
	i, acc := n.Int64()
	if acc != big.Exact || int64(int(i)) != i {
		b.errorf(p, "%s is too large", name)
		return 0, false
	}
	return i, true
}

func (b *body) int64(name string, dst *int64) {
	if v, ok := b.value(name, cty.Number, "a whole number"); ok {
		if i, ok := b.whole(name, v.AsBigFloat(), b.loc.at(name)); ok {
			*dst = i
		} else {
			delete(b.loc.attrs, name)
		}
	}
}

func (b *body) integer(name string, dst *int) {
	var i int64
	if b.int64(name, &i); b.loc.has(name) {
		*dst = int(i)
	}
}

func (b *body) ints(name string, dst *[]int) {
	v, ok := b.value(name, cty.List(cty.Number), "a list of whole numbers")
	if !ok {
		return
	}
	out := make([]int, 0, v.LengthInt())
	for i, e := range v.AsValueSlice() {
		n, ok := b.whole(name, e.AsBigFloat(), b.loc.elem(name, i))
		if !ok {
			delete(b.loc.attrs, name)
			return
		}
		out = append(out, int(n))
	}
	*dst = out
}

// duration reads a Go duration string; negative durations are refused.
func (b *body) duration(name string, dst *time.Duration) {
	var s string
	if b.str(name, &s); !b.loc.has(name) {
		return
	}
	p := b.loc.at(name)
	dur, err := time.ParseDuration(s)
	switch {
	case err != nil:
		b.errorf(p, "%s: invalid duration %q (want a Go duration such as \"300ms\", \"10s\" or \"1m30s\")", name, s)
	case dur < 0:
		b.errorf(p, "%s must not be negative, got %q", name, s)
	default:
		*dst = dur
		return
	}
	delete(b.loc.attrs, name)
}

// suggest returns the candidate closest to name when it is close enough to be a typo.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
