/* ==== JSON parse, query, write =================================================== */
/* Owns: the JSON document (parser, tree, queries, number conversion) and the JSON writer.
   Uses only the base layer (allocator hooks, yhc_buf, yhc_error).

   Why the design is as it is (yyjson's, cut down):
   - A document is two heap blocks: the doc header with a NUL-padded copy of the input behind
     it, and one array of 16-byte nodes in document order. Strings are unescaped in place in
     that copy (unescaped text is never longer than its escaped form) and NUL-terminated where
     the closing quote was, so most strings cost no copy and freeing a document is one call.
   - The padding after the copy lets the hot loops run without bounds checks: the NUL after
     the last byte stops every scanner (it is never valid where a scanner is looking), and
     reading a word past the end stays inside the block.
   - Containers record their node count (span), so the next sibling is one add away, a value
     can be skipped or copied as a slice of the array, and an array of scalars is indexed
     directly. Object members are a key node followed by the value node; a flag on the value
     says "the node before me is my key", and another marks the last child, so iteration
     needs only the node pointer.
   - Numbers are validated during the parse and keep their source text; the getters convert
     (int64 exactly, double correctly rounded). Converting later costs the reader of one
     field almost nothing and keeps the parse of number-heavy input fast. The double path
     never hands strtod() a decimal point, so the C locale setting cannot change a result. */

#define YHC__JSON_TMASK 7u
#define YHC__JSON_MEMBER 8u  /* an object member's value: the node before it is the key */
#define YHC__JSON_LAST 16u   /* the last child of its container (and the root) */
#define YHC__JSON_FLAG 32u   /* BOOL: true; NUMBER: integer syntax (no '.', no exponent) */
#define YHC__JSON_SHIFT 8    /* tag >> SHIFT: string bytes, number text bytes, child count */
#define YHC__JSON_PAD 16     /* NUL bytes after the input copy; >= the 8-byte word scan */

struct yhc_json {
  uint64_t tag; /* type | flags | length << YHC__JSON_SHIFT */
  union {
    const char *s; /* STRING: the unescaped bytes; NUMBER: the source text */
    size_t span;   /* ARRAY/OBJECT: nodes in the subtree, itself included */
  } u;
};

struct yhc_json_doc {
  yhc_json *nodes; /* nodes[0] is the root */
  size_t count;
  /* the NUL-padded input copy follows in the same block */
};

/* 1 for the four bytes RFC 8259 calls whitespace */
static const unsigned char yhc__json_ws[256] = {
    0,0,0,0,0,0,0,0,0,1,1,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
};

/* 1 for bytes a string keeps as they are: printable ASCII other than '"' and '\\'. Shared by
   the parser (what to skip) and the writer (what needs no escape). */
static const unsigned char yhc__json_plain[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,1,0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
};

#define YHC__JSON_ONES UINT64_C(0x0101010101010101)
#define YHC__JSON_HIGH UINT64_C(0x8080808080808080)
#define YHC__JSON_TYPE(v) ((unsigned)((v)->tag & YHC__JSON_TMASK))
#define YHC__JSON_LEN(v) ((size_t)((v)->tag >> YHC__JSON_SHIFT))

/* Nonzero when any of the 8 bytes in w is '"', '\\', below 0x20 or at least 0x80: the bytes
   that end a plain run inside a string. Each test is the exact "has a zero byte" idiom, so
   the answer for the word as a whole is exact in either byte order. */
static uint64_t yhc__json_special8(uint64_t w) {
  uint64_t q = w ^ (YHC__JSON_ONES * 0x22u), b = w ^ (YHC__JSON_ONES * 0x5Cu);
  return (((q - YHC__JSON_ONES) & ~q) | ((b - YHC__JSON_ONES) & ~b) |
          ((w - YHC__JSON_ONES * 0x20u) & ~w) | w) &
         YHC__JSON_HIGH;
}

/* Length of the well-formed UTF-8 sequence at p (Unicode table 3-7: no overlongs, no
   surrogates, nothing above U+10FFFF), or 0. Reads a byte only after the one before it
   proved to be a continuation byte, so it never reads past a terminator. */
static size_t yhc__json_utf8(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
  if (c < 0xF0) {
    if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;
    if (c == 0xED && p[1] > 0x9F) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;
    if (c == 0xF4 && p[1] > 0x8F) return 0;
    return 4;
  }
  return 0;
}

/* ---- parser */

typedef struct yhc__json_parser {
  unsigned char *start; /* the input copy; start[len..len+PAD) are NUL */
  unsigned char *end;
  yhc_json *nodes;
  size_t cap;
  yhc_error *err;
} yhc__json_parser;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
static void yhc__json_fail(yhc__json_parser *ps, yhc_err code, const unsigned char *at,
                           const char *fmt, ...) {
  char what[160];
  size_t off = (size_t)(at - ps->start);
  va_list ap;
  if (!ps->err) return;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  yhc__error_set(ps->err, code, off, "%s at offset %zu", what, off);
}

/* Names the byte a parser stopped at, for messages: 'x', or 0xNN when not printable. */
static const char *yhc__json_byte_name(char buf[8], const yhc__json_parser *ps,
                                       const unsigned char *p) {
  if (p >= ps->end) return "end of input";
  if (*p >= 0x21 && *p < 0x7F)
    snprintf(buf, 8, "'%c'", *p);
  else
    snprintf(buf, 8, "0x%02X", *p);
  return buf;
}

static void yhc__json_unexpected(yhc__json_parser *ps, const unsigned char *p, const char *want) {
  char b[8];
  if (p >= ps->end)
    yhc__json_fail(ps, YHC_ERR_JSON, p, "unexpected end of input, expected %s", want);
  else
    yhc__json_fail(ps, YHC_ERR_JSON, p, "unexpected %s, expected %s",
                   yhc__json_byte_name(b, ps, p), want);
}

static int yhc__json_hex4(const unsigned char *p) {
  int v = 0, i, d;
  for (i = 0; i < 4; i++) { /* stops at the first non-hex byte, so never passes the NUL pad */
    unsigned c = p[i];
    if (c - '0' < 10u)
      d = (int)(c - '0');
    else if ((c | 0x20u) - 'a' < 6u)
      d = (int)((c | 0x20u) - 'a' + 10);
    else
      return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Parses one escape at p (which points at the backslash) and writes its UTF-8 bytes to *w.
   Returns the input position after it, or NULL with the error set. */
static unsigned char *yhc__json_escape(yhc__json_parser *ps, unsigned char *p, unsigned char **w) {
  unsigned char *o = *w;
  int u, lo;
  char b[8];
  switch (p[1]) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u':
      u = yhc__json_hex4(p + 2);
      if (u < 0) {
        yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid \\u escape (needs 4 hex digits)");
        return NULL;
      }
      if (u >= 0xD800 && u <= 0xDFFF) {
        lo = (u <= 0xDBFF && p[6] == '\\' && p[7] == 'u') ? yhc__json_hex4(p + 8) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) {
          yhc__json_fail(ps, YHC_ERR_JSON, p, "lone surrogate \\u%04X", (unsigned)u);
          return NULL;
        }
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
      }
      if (u < 0x80) {
        *o++ = (unsigned char)u;
      } else if (u < 0x800) {
        *o++ = (unsigned char)(0xC0 | (u >> 6));
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
      } else if (u < 0x10000) {
        *o++ = (unsigned char)(0xE0 | (u >> 12));
        *o++ = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
      } else {
        *o++ = (unsigned char)(0xF0 | (u >> 18));
        *o++ = (unsigned char)(0x80 | ((u >> 12) & 0x3F));
        *o++ = (unsigned char)(0x80 | ((u >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (u & 0x3F));
      }
      *w = o;
      return p + 6;
    default:
      if (p + 1 >= ps->end)
        yhc__json_fail(ps, YHC_ERR_JSON, p, "unterminated string");
      else if (p[1] >= 0x21 && p[1] < 0x7F)
        yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid escape \\%c", p[1]);
      else
        yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid escape \\ followed by %s",
                       yhc__json_byte_name(b, ps, p + 1));
      return NULL;
  }
  *w = o;
  return p + 2;
}

static void yhc__json_bad_string_byte(yhc__json_parser *ps, const unsigned char *p,
                                      const unsigned char *open) {
  if (p >= ps->end)
    yhc__json_fail(ps, YHC_ERR_JSON, open, "unterminated string");
  else if (*p >= 0x80)
    yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid UTF-8 in string");
  else
    yhc__json_fail(ps, YHC_ERR_JSON, p, "unescaped control character 0x%02X in string", *p);
}

/* Parses the string whose opening quote is at p[-1] into node (unescaping in place) and
   returns the position after the closing quote, or NULL with the error set. */
static unsigned char *yhc__json_string(yhc__json_parser *ps, unsigned char *p, yhc_json *node) {
  unsigned char *s = p, *w;
  uint64_t word;
  size_t k;
  for (;;) {
    memcpy(&word, p, 8); /* in bounds: a special byte (at worst the NUL pad) stops us first */
    if (!yhc__json_special8(word)) {
      p += 8;
      continue;
    }
    while (yhc__json_plain[*p]) p++;
    if (*p == '"') break;
    /* multibyte runs (CJK text, say): the common 3-byte form inline, the rest in the function */
    while (*p >= 0x80) {
      if (*p >= 0xE1 && *p <= 0xEF && *p != 0xED && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80)
        k = 3;
      else if (!(k = yhc__json_utf8(p, 4)))
        break;
      p += k;
    }
    if (yhc__json_plain[*p] || *p == '"') continue;
    if (*p == '\\') goto unescape;
    yhc__json_bad_string_byte(ps, p, s - 1);
    return NULL;
  }
  node->tag = YHC_JSON_STRING | ((uint64_t)(p - s) << YHC__JSON_SHIFT);
  node->u.s = YHC__CAST(const char *, YHC__CAST(void *, s));
  *p = 0;
  return p + 1;

unescape: /* from here on the output lags the input: w <= p */
  w = p;
  for (;;) {
    if (yhc__json_plain[*p]) {
      *w++ = *p++;
    } else if (*p == '\\') {
      p = yhc__json_escape(ps, p, &w);
      if (!p) return NULL;
    } else if (*p == '"') {
      break;
    } else if (*p >= 0x80 && (k = yhc__json_utf8(p, 4)) != 0) {
      while (k--) *w++ = *p++; /* forward copy is safe: w trails p */
    } else {
      yhc__json_bad_string_byte(ps, p, s - 1);
      return NULL;
    }
  }
  node->tag = YHC_JSON_STRING | ((uint64_t)(w - s) << YHC__JSON_SHIFT);
  node->u.s = YHC__CAST(const char *, YHC__CAST(void *, s));
  *w = 0;
  return p + 1;
}

static int yhc__json_grow(yhc__json_parser *ps, size_t need) {
  size_t cap = ps->cap + ps->cap / 2 + 64;
  yhc_json *nn;
  if (cap < need) cap = need;
  if (cap > SIZE_MAX / sizeof(yhc_json)) return -1;
  nn = YHC__CAST(yhc_json *, YHC_REALLOC(ps->nodes, cap * sizeof(yhc_json)));
  if (!nn) return -1;
  ps->nodes = nn;
  ps->cap = cap;
  return 0;
}

/* Pretty-printed input indents with runs of spaces; those go 8 at a time. */
#define YHC__JSON_SKIP_WS(p)                                     \
  while (yhc__json_ws[*(p)]) {                                   \
    uint64_t ws8_;                                               \
    (p)++;                                                       \
    memcpy(&ws8_, (p), 8);                                       \
    while (ws8_ == YHC__JSON_ONES * 0x20u) {                     \
      (p) += 8;                                                  \
      memcpy(&ws8_, (p), 8);                                     \
    }                                                            \
  }
#define YHC__JSON_DIGIT(c) ((unsigned)(c) - '0' < 10u)

/* One pass, no recursion: an open container keeps its parent's index in u.span and the
   count of the container being filled lives in a register, saved in the parent's tag while
   a child container is open. So nesting costs no stack beyond the node array itself. */
static size_t yhc__json_run(yhc__json_parser *ps, int max_depth) {
  unsigned char *p = ps->start, *s;
  yhc_json *nodes = ps->nodes;
  size_t n = 0, cap = ps->cap, cidx = 0, ccount = 0, prev = 0, idx, parent;
  uint64_t vflag = 0, flag; /* vflag: MEMBER while filling an object, else 0 */
  int depth = 0;
  unsigned char c;

value:
  YHC__JSON_SKIP_WS(p);
  if (YHC__UNLIKELY(n + 2 > cap)) { /* 2: a key and its value */
    if (yhc__json_grow(ps, n + 2)) goto nomem;
    nodes = ps->nodes;
    cap = ps->cap;
  }
  idx = n;
  c = *p;
  switch (c) {
    case '"':
      p = yhc__json_string(ps, p + 1, &nodes[idx]);
      if (!p) return 0;
      nodes[idx].tag |= vflag;
      n++;
      goto scalar_done;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      s = p;
      if (*p == '-') p++;
      if (*p == '0') {
        p++;
        if (YHC__JSON_DIGIT(*p)) {
          yhc__json_fail(ps, YHC_ERR_JSON, s, "number with a leading zero");
          return 0;
        }
      } else if (YHC__JSON_DIGIT(*p)) {
        do p++;
        while (YHC__JSON_DIGIT(*p));
      } else {
        yhc__json_fail(ps, YHC_ERR_JSON, s, "invalid number: no digit after '-'");
        return 0;
      }
      flag = YHC__JSON_FLAG;
      if (*p == '.') {
        p++;
        if (!YHC__JSON_DIGIT(*p)) {
          yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid number: no digit after '.'");
          return 0;
        }
        do p++;
        while (YHC__JSON_DIGIT(*p));
        flag = 0;
      }
      if ((*p | 0x20) == 'e') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!YHC__JSON_DIGIT(*p)) {
          yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid number: no digit in exponent");
          return 0;
        }
        do p++;
        while (YHC__JSON_DIGIT(*p));
        flag = 0;
      }
      nodes[idx].tag = YHC_JSON_NUMBER | flag | vflag | ((uint64_t)(p - s) << YHC__JSON_SHIFT);
      nodes[idx].u.s = YHC__CAST(const char *, YHC__CAST(void *, s));
      n++;
      goto scalar_done;
    case '{':
    case '[':
      if (depth >= max_depth) {
        yhc__json_fail(ps, YHC_ERR_LIMIT, p, "nesting deeper than %d", max_depth);
        return 0;
      }
      nodes[idx].tag = (c == '{' ? YHC_JSON_OBJECT : YHC_JSON_ARRAY) | vflag;
      nodes[idx].u.span = cidx;
      if (depth) nodes[cidx].tag = (nodes[cidx].tag & 0xFF) | ((uint64_t)ccount << YHC__JSON_SHIFT);
      cidx = idx;
      ccount = 0;
      depth++;
      n++;
      p++;
      vflag = c == '{' ? YHC__JSON_MEMBER : 0;
      YHC__JSON_SKIP_WS(p);
      if (*p == c + 2) goto close; /* '{'+2 == '}', '['+2 == ']' */
      ccount = 1;
      if (vflag) goto key;
      goto value;
    case 't':
      if (memcmp(p, "true", 4)) goto bad_literal; /* the pad makes 4 bytes readable */
      nodes[idx].tag = YHC_JSON_BOOL | YHC__JSON_FLAG | vflag;
      p += 4;
      n++;
      goto scalar_done;
    case 'f':
      if (memcmp(p, "false", 5)) goto bad_literal;
      nodes[idx].tag = YHC_JSON_BOOL | vflag;
      p += 5;
      n++;
      goto scalar_done;
    case 'n':
      if (memcmp(p, "null", 4)) goto bad_literal;
      nodes[idx].tag = YHC_JSON_NULL | vflag;
      p += 4;
      n++;
      goto scalar_done;
    default:
      yhc__json_unexpected(ps, p, "a value");
      return 0;
  }

bad_literal:
  yhc__json_fail(ps, YHC_ERR_JSON, p, "invalid literal (true, false or null expected)");
  return 0;

key:
  YHC__JSON_SKIP_WS(p);
  if (*p != '"') {
    yhc__json_unexpected(ps, p, "a string key");
    return 0;
  }
  p = yhc__json_string(ps, p + 1, &nodes[n]); /* room for key + value was reserved */
  if (!p) return 0;
  n++;
  YHC__JSON_SKIP_WS(p);
  if (*p != ':') {
    yhc__json_unexpected(ps, p, "':' after object key");
    return 0;
  }
  p++;
  goto value;

scalar_done:
  prev = idx;
next:
  if (!depth) goto done;
  YHC__JSON_SKIP_WS(p);
  if (*p == ',') {
    p++;
    ccount++;
    if (vflag) goto key;
    goto value;
  }
  if (*p == (vflag ? '}' : ']')) goto close;
  yhc__json_unexpected(ps, p, vflag ? "',' or '}'" : "',' or ']'");
  return 0;

close:
  parent = nodes[cidx].u.span;
  if (ccount) nodes[prev].tag |= YHC__JSON_LAST;
  nodes[cidx].tag = (nodes[cidx].tag & 0xFF) | ((uint64_t)ccount << YHC__JSON_SHIFT);
  nodes[cidx].u.span = n - cidx;
  prev = cidx;
  p++;
  if (--depth) {
    cidx = parent;
    ccount = (size_t)(nodes[cidx].tag >> YHC__JSON_SHIFT);
    vflag = YHC__JSON_TYPE(&nodes[cidx]) == YHC_JSON_OBJECT ? YHC__JSON_MEMBER : 0;
  }
  goto next;

done:
  YHC__JSON_SKIP_WS(p);
  if (p != ps->end) {
    char b[8];
    yhc__json_fail(ps, YHC_ERR_JSON, p, "unexpected %s after the top-level value",
                   yhc__json_byte_name(b, ps, p));
    return 0;
  }
  nodes[0].tag |= YHC__JSON_LAST;
  return n;

nomem:
  yhc__json_fail(ps, YHC_ERR_NOMEM, p, "out of memory for %zu JSON values", n + 2);
  return 0;
}

YHCDEF yhc_json_doc *yhc_json_parse(const char *text, size_t len, const yhc_json_opts *opts,
                                    yhc_error *err) {
  yhc__json_parser ps;
  yhc_json_doc *doc;
  size_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : SIZE_MAX;
  int max_depth = opts && opts->max_depth > 0 ? opts->max_depth : 512;
  yhc__error_clear(err);
  if (!text && len) {
    yhc__error_set(err, YHC_ERR_INVALID, 0, "NULL text with length %zu", len);
    return NULL;
  }
  if (len > max_bytes) {
    yhc__error_set(err, YHC_ERR_LIMIT, 0, "input of %zu bytes exceeds max_bytes %zu", len,
                   max_bytes);
    return NULL;
  }
  if (len > SIZE_MAX - sizeof(yhc_json_doc) - YHC__JSON_PAD) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "input of %zu bytes is too large", len);
    return NULL;
  }
  doc = YHC__CAST(yhc_json_doc *, YHC_MALLOC(sizeof(yhc_json_doc) + len + YHC__JSON_PAD));
  if (!doc) {
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory copying %zu bytes of JSON", len);
    return NULL;
  }
  ps.start = YHC__CAST(unsigned char *, YHC__CAST(void *, doc + 1));
  ps.end = ps.start + len;
  if (len) memcpy(ps.start, text, len);
  memset(ps.end, 0, YHC__JSON_PAD);
  ps.err = err;
  /* A guess from typical documents (one value per 8-16 bytes) that avoids most regrowth
     without reserving the worst case (one value per 2 bytes). */
  ps.cap = len / 12 + 16;
  ps.nodes = YHC__CAST(yhc_json *, YHC_MALLOC(ps.cap * sizeof(yhc_json)));
  if (!ps.nodes) {
    YHC_FREE(doc);
    yhc__error_set(err, YHC_ERR_NOMEM, 0, "out of memory for JSON values");
    return NULL;
  }
  doc->count = yhc__json_run(&ps, max_depth);
  if (!doc->count) {
    YHC_FREE(ps.nodes);
    YHC_FREE(doc);
    return NULL;
  }
  doc->nodes = ps.nodes;
  return doc;
}

YHCDEF void yhc_json_free(yhc_json_doc *doc) {
  if (!doc) return;
  YHC_FREE(doc->nodes);
  YHC_FREE(doc);
}

YHCDEF const yhc_json *yhc_json_root(const yhc_json_doc *doc) { return doc ? doc->nodes : NULL; }

/* ---- queries */

static size_t yhc__json_span(const yhc_json *v) {
  unsigned t = YHC__JSON_TYPE(v);
  return (t == YHC_JSON_ARRAY || t == YHC_JSON_OBJECT) ? v->u.span : 1;
}

YHCDEF yhc_json_type yhc_json_typeof(const yhc_json *v) {
  return v ? YHC__CAST(yhc_json_type, YHC__JSON_TYPE(v)) : YHC_JSON_NONE;
}

YHCDEF size_t yhc_json_len(const yhc_json *v) {
  unsigned t = v ? YHC__JSON_TYPE(v) : 0u;
  return (t == YHC_JSON_ARRAY || t == YHC_JSON_OBJECT || t == YHC_JSON_STRING) ? YHC__JSON_LEN(v)
                                                                               : 0;
}

YHCDEF const yhc_json *yhc_json_first(const yhc_json *c) {
  if (!c || !YHC__JSON_LEN(c)) return NULL;
  if (YHC__JSON_TYPE(c) == YHC_JSON_ARRAY) return c + 1;
  if (YHC__JSON_TYPE(c) == YHC_JSON_OBJECT) return c + 2;
  return NULL;
}

YHCDEF const yhc_json *yhc_json_next(const yhc_json *v) {
  if (!v || (v->tag & YHC__JSON_LAST)) return NULL;
  return v + yhc__json_span(v) + ((v->tag & YHC__JSON_MEMBER) ? 1 : 0);
}

YHCDEF yhc_str yhc_json_key(const yhc_json *m) {
  yhc_str r;
  r.ptr = NULL;
  r.len = 0;
  if (m && (m->tag & YHC__JSON_MEMBER)) {
    r.ptr = m[-1].u.s;
    r.len = YHC__JSON_LEN(&m[-1]);
  }
  return r;
}

YHCDEF const yhc_json *yhc_json_at(const yhc_json *c, size_t index) {
  const yhc_json *v;
  if (!c || index >= yhc_json_len(c) || YHC__JSON_TYPE(c) == YHC_JSON_STRING) return NULL;
  if (YHC__JSON_TYPE(c) == YHC_JSON_ARRAY && c->u.span == YHC__JSON_LEN(c) + 1)
    return c + 1 + index; /* only scalars inside: every element is one node */
  for (v = yhc_json_first(c); index; index--) v = yhc_json_next(v);
  return v;
}

YHCDEF const yhc_json *yhc_json_getn(const yhc_json *obj, const char *key, size_t key_len) {
  const yhc_json *v;
  if (!obj || YHC__JSON_TYPE(obj) != YHC_JSON_OBJECT || (!key && key_len)) return NULL;
  for (v = yhc_json_first(obj); v; v = yhc_json_next(v)) {
    if (YHC__JSON_LEN(&v[-1]) == key_len && (key_len == 0 || !memcmp(v[-1].u.s, key, key_len)))
      return v;
  }
  return NULL;
}

YHCDEF const yhc_json *yhc_json_get(const yhc_json *obj, const char *key) {
  return key ? yhc_json_getn(obj, key, strlen(key)) : NULL;
}

YHCDEF yhc_str yhc_json_str(const yhc_json *v, yhc_str def) {
  if (v && YHC__JSON_TYPE(v) == YHC_JSON_STRING) {
    def.ptr = v->u.s;
    def.len = YHC__JSON_LEN(v);
  }
  return def;
}

YHCDEF const char *yhc_json_cstr(const yhc_json *v, const char *def) {
  return (v && YHC__JSON_TYPE(v) == YHC_JSON_STRING) ? v->u.s : def;
}

YHCDEF int yhc_json_bool(const yhc_json *v, int def) {
  if (!v || YHC__JSON_TYPE(v) != YHC_JSON_BOOL) return def;
  return (v->tag & YHC__JSON_FLAG) ? 1 : 0;
}

YHCDEF yhc_str yhc_json_raw_number(const yhc_json *v) {
  yhc_str r;
  r.ptr = NULL;
  r.len = 0;
  if (v && YHC__JSON_TYPE(v) == YHC_JSON_NUMBER) {
    r.ptr = v->u.s;
    r.len = YHC__JSON_LEN(v);
  }
  return r;
}

/* ---- number conversion (over number text already validated by the parser) */

/* A number as sign * digits * 10^exp10 with leading and trailing zeros removed from the
   digits (the trailing ones moved into exp10). Only the first 19 significant digits are kept
   in `mant`; exp10 then scales those, and `exp_raw` scales all digits up to the last one,
   trailing zeros included, for the slow path that copies them all. */
typedef struct yhc__json_dec {
  int neg;
  uint64_t mant;      /* the first min(ndig, 19) significant digits */
  size_t ndig;        /* significant digits, first nonzero to last nonzero */
  long long exp10;    /* value = mant * 10^exp10 when ndig <= 19 */
  long long exp_raw;  /* value = (digits from the first nonzero to the end) * 10^exp_raw */
} yhc__json_dec;

/* Exponents are saturated here: far beyond any double, yet no arithmetic can overflow. */
#define YHC__JSON_EXP_SAT 1000000000000LL

static void yhc__json_decompose(const char *s, size_t len, yhc__json_dec *d) {
  const char *e = s + len;
  size_t zeros = 0, nfrac = 0;
  long long ex = 0;
  int in_frac = 0, eneg = 0;
  d->neg = 0;
  d->mant = 0;
  d->ndig = 0;
  if (s < e && *s == '-') {
    d->neg = 1;
    s++;
  }
  for (; s < e; s++) {
    unsigned c = (unsigned char)*s;
    if (c == '.') {
      in_frac = 1;
      continue;
    }
    if (c - '0' >= 10u) break;
    nfrac += (size_t)in_frac;
    if (c == '0') {
      if (d->ndig) zeros++; /* leading zeros are not significant */
      continue;
    }
    for (; zeros; zeros--) { /* zeros followed by a nonzero digit are significant */
      if (d->ndig < 19) d->mant *= 10;
      d->ndig++;
    }
    if (d->ndig < 19) d->mant = d->mant * 10 + (c - '0');
    d->ndig++;
  }
  if (s < e) { /* the exponent */
    s++;
    if (*s == '-' || *s == '+') eneg = *s++ == '-';
    for (; s < e; s++)
      if (ex < YHC__JSON_EXP_SAT) ex = ex * 10 + (*s - '0');
    if (eneg) ex = -ex;
  }
  d->exp_raw = ex - (long long)nfrac;
  d->exp10 = d->exp_raw + (long long)zeros + (d->ndig > 19 ? (long long)(d->ndig - 19) : 0);
}

YHCDEF int yhc_json_int_ok(const yhc_json *v, int64_t *out) {
  yhc__json_dec d;
  uint64_t m, lim;
  long long e;
  if (!v || YHC__JSON_TYPE(v) != YHC_JSON_NUMBER) return 0;
  if ((v->tag & YHC__JSON_FLAG) && YHC__JSON_LEN(v) <= 18) { /* fits without overflow */
    const char *s = v->u.s, *end = s + YHC__JSON_LEN(v);
    int neg = *s == '-';
    int64_t x = 0;
    for (s += neg; s < end; s++) x = x * 10 + (*s - '0');
    if (out) *out = neg ? -x : x;
    return 1;
  }
  yhc__json_decompose(v->u.s, YHC__JSON_LEN(v), &d);
  if (!d.ndig) {
    if (out) *out = 0;
    return 1;
  }
  if (d.ndig > 19 || d.exp10 < 0 || d.exp10 > 18) return 0;
  m = d.mant;
  for (e = d.exp10; e; e--) {
    if (m > UINT64_MAX / 10) return 0;
    m *= 10;
  }
  lim = d.neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  if (m > lim) return 0;
  if (out) *out = d.neg ? (m == lim ? INT64_MIN : -(int64_t)m) : (int64_t)m;
  return 1;
}

YHCDEF int64_t yhc_json_int(const yhc_json *v, int64_t def) {
  int64_t x;
  return yhc_json_int_ok(v, &x) ? x : def;
}

static const double yhc__json_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                           1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                           1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Correctly rounded text -> double. Fast path (Clinger): a significand below 2^53 times or
   over an exact power of ten is one correctly rounded IEEE operation. Anything else goes to
   strtod() as "<digits>e<exp>": no decimal point, so the locale cannot matter. 780 kept
   digits plus a nonzero sticky digit decide the rounding the same way all digits would
   (a halfway point between two doubles has fewer than 770 significant digits). */
static double yhc__json_text_to_double(const char *s, size_t len) {
  yhc__json_dec d;
  char buf[800];
  size_t k = 0, i;
  long long e;
  int sticky = 0;
  double r;
  yhc__json_decompose(s, len, &d);
  if (!d.ndig) return d.neg ? -0.0 : 0.0;
  if (d.ndig <= 19 && d.mant <= (UINT64_C(1) << 53) && d.exp10 >= -22 && d.exp10 <= 22) {
    r = (double)d.mant;
    r = d.exp10 < 0 ? r / yhc__json_pow10[-d.exp10] : r * yhc__json_pow10[d.exp10];
    return d.neg ? -r : r;
  }
  if (d.neg) buf[k++] = '-';
  e = d.exp_raw;
  for (i = 0; i < len; i++) { /* digits from the first nonzero one to the end */
    unsigned c = (unsigned char)s[i];
    if (c == 'e' || c == 'E') break;
    if (c - '0' >= 10u || (c == '0' && k == (size_t)d.neg)) continue;
    if (k < 781 + (size_t)d.neg) {
      buf[k++] = (char)c;
    } else {
      sticky |= c != '0';
      e++;
    }
  }
  if (sticky) {
    buf[k++] = '1';
    e--;
  }
  if (e > 99999) e = 99999; /* 781 digits times 10^99999 is infinite either way */
  if (e < -99999) e = -99999;
  buf[k++] = 'e';
  snprintf(buf + k, sizeof buf - k, "%lld", e);
  return strtod(buf, NULL);
}

YHCDEF double yhc_json_num(const yhc_json *v, double def) {
  if (!v || YHC__JSON_TYPE(v) != YHC_JSON_NUMBER) return def;
  return yhc__json_text_to_double(v->u.s, YHC__JSON_LEN(v));
}

/* ---- writer */

static void yhc__jw_fail(yhc_jw *w, yhc_err code) {
  if (!w->err) w->err = (int)code;
}

static void yhc__jw_put(yhc_jw *w, const char *s, size_t n) {
  if (!w->err && yhc_buf_append(w->out, s, n)) yhc__jw_fail(w, YHC_ERR_NOMEM);
}

/* Writes the separator a new value needs and checks that a value may go here at all.
   Returns 0 when the caller should write the value. */
static int yhc__jw_pre_value(yhc_jw *w) {
  int d = w->depth;
  if (w->err) return -1;
  if (w->in_object[d]) {
    if (!w->after_key) { /* an object wants a key first */
      yhc__jw_fail(w, YHC_ERR_INVALID);
      return -1;
    }
    w->after_key = 0;
    return 0;
  }
  if (w->need_comma[d]) {
    if (!d) { /* a second top-level value */
      yhc__jw_fail(w, YHC_ERR_INVALID);
      return -1;
    }
    yhc__jw_put(w, ",", 1);
  }
  w->need_comma[d] = 1;
  return w->err ? -1 : 0;
}

/* Escapes s into the output: runs of bytes that need nothing are appended in one go. */
static void yhc__jw_string(yhc_jw *w, const char *str, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = YHC__CAST(const unsigned char *, YHC__CAST(const void *, str));
  size_t i = 0, run, k;
  char esc[6];
  if (w->err) return;
  if (yhc_buf_reserve(w->out, len + 2)) {
    yhc__jw_fail(w, YHC_ERR_NOMEM);
    return;
  }
  yhc__jw_put(w, "\"", 1);
  while (i < len) {
    run = i;
    for (;;) {
      while (i < len && yhc__json_plain[s[i]]) i++;
      if (i < len && s[i] >= 0x80) {
        k = yhc__json_utf8(s + i, len - i);
        if (!k) {
          yhc__jw_fail(w, YHC_ERR_JSON);
          return;
        }
        i += k;
        continue;
      }
      break;
    }
    if (i > run) yhc__jw_put(w, str + run, i - run);
    if (i == len) break;
    esc[0] = '\\';
    switch (s[i]) {
      case '"': esc[1] = '"'; k = 2; break;
      case '\\': esc[1] = '\\'; k = 2; break;
      case '\b': esc[1] = 'b'; k = 2; break;
      case '\f': esc[1] = 'f'; k = 2; break;
      case '\n': esc[1] = 'n'; k = 2; break;
      case '\r': esc[1] = 'r'; k = 2; break;
      case '\t': esc[1] = 't'; k = 2; break;
      default:
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[s[i] >> 4];
        esc[5] = hex[s[i] & 15];
        k = 6;
    }
    yhc__jw_put(w, esc, k);
    i++;
  }
  yhc__jw_put(w, "\"", 1);
}

YHCDEF void yhc_jw_init(yhc_jw *w, yhc_buf *out) {
  memset(w, 0, sizeof *w);
  w->out = out;
  if (!out) w->err = YHC_ERR_INVALID;
}

static void yhc__jw_open(yhc_jw *w, int object) {
  if (yhc__jw_pre_value(w)) return;
  if (w->depth >= YHC_JW_MAX_DEPTH) {
    yhc__jw_fail(w, YHC_ERR_LIMIT);
    return;
  }
  yhc__jw_put(w, object ? "{" : "[", 1);
  w->depth++;
  w->need_comma[w->depth] = 0;
  w->in_object[w->depth] = (unsigned char)object;
}

static void yhc__jw_close(yhc_jw *w, int object) {
  if (w->err) return;
  if (!w->depth || w->in_object[w->depth] != object || w->after_key) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  yhc__jw_put(w, object ? "}" : "]", 1);
  w->depth--;
}

YHCDEF void yhc_jw_obj_begin(yhc_jw *w) { yhc__jw_open(w, 1); }
YHCDEF void yhc_jw_obj_end(yhc_jw *w) { yhc__jw_close(w, 1); }
YHCDEF void yhc_jw_arr_begin(yhc_jw *w) { yhc__jw_open(w, 0); }
YHCDEF void yhc_jw_arr_end(yhc_jw *w) { yhc__jw_close(w, 0); }

YHCDEF void yhc_jw_keyn(yhc_jw *w, const char *key, size_t len) {
  if (w->err) return;
  if (!w->in_object[w->depth] || w->after_key || (!key && len)) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  if (w->need_comma[w->depth]) yhc__jw_put(w, ",", 1);
  w->need_comma[w->depth] = 1;
  yhc__jw_string(w, key ? key : "", len);
  yhc__jw_put(w, ":", 1);
  w->after_key = 1;
}

YHCDEF void yhc_jw_key(yhc_jw *w, const char *key) {
  if (!key) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  yhc_jw_keyn(w, key, strlen(key));
}

YHCDEF void yhc_jw_strn(yhc_jw *w, const char *s, size_t len) {
  if (!s && len) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  if (yhc__jw_pre_value(w)) return;
  yhc__jw_string(w, s ? s : "", len);
}

YHCDEF void yhc_jw_str(yhc_jw *w, const char *s) {
  if (!s) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  yhc_jw_strn(w, s, strlen(s));
}

YHCDEF void yhc_jw_int(yhc_jw *w, int64_t v) {
  char buf[24], *p = buf + sizeof buf;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN safe */
  if (yhc__jw_pre_value(w)) return;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--p = '-';
  yhc__jw_put(w, p, (size_t)(buf + sizeof buf - p));
}

/* printf's %g writes the locale's decimal point; JSON wants '.'. Every other byte %g can
   produce here is a digit, a sign or 'e', so whatever else appears is the point. */
static size_t yhc__jw_fmt_double(char *out, size_t cap, int prec, double v) {
  char tmp[64];
  size_t i, k = 0;
  int n = snprintf(tmp, sizeof tmp, "%.*g", prec, v), point = 0;
  if (n < 0 || (size_t)n >= sizeof tmp) return 0;
  for (i = 0; i < (size_t)n && k + 1 < cap; i++) {
    char c = tmp[i];
    if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e') {
      out[k++] = c;
      point = 0;
    } else if (!point) { /* a multibyte point becomes one '.' */
      out[k++] = '.';
      point = 1;
    }
  }
  out[k] = 0;
  return k;
}

YHCDEF void yhc_jw_num(yhc_jw *w, double v) {
  char buf[64];
  size_t n = 0;
  int prec;
  if (w->err) return;
  if (!(v - v == 0)) { /* NaN and the infinities: JSON has no such numbers */
    yhc__jw_fail(w, YHC_ERR_JSON);
    return;
  }
  if (yhc__jw_pre_value(w)) return;
  for (prec = 15; prec <= 17; prec++) {
    n = yhc__jw_fmt_double(buf, sizeof buf, prec, v);
    if (prec == 17 || yhc__json_text_to_double(buf, n) == v) break;
  }
  yhc__jw_put(w, buf, n);
}

YHCDEF void yhc_jw_bool(yhc_jw *w, int v) {
  if (yhc__jw_pre_value(w)) return;
  if (v)
    yhc__jw_put(w, "true", 4);
  else
    yhc__jw_put(w, "false", 5);
}

YHCDEF void yhc_jw_null(yhc_jw *w) {
  if (yhc__jw_pre_value(w)) return;
  yhc__jw_put(w, "null", 4);
}

YHCDEF void yhc_jw_raw(yhc_jw *w, const char *json, size_t len) {
  if (!json && len) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  if (yhc__jw_pre_value(w)) return;
  yhc__jw_put(w, json ? json : "", len);
}

static void yhc__jw_scalar(yhc_jw *w, const yhc_json *v) {
  switch (YHC__JSON_TYPE(v)) {
    case YHC_JSON_STRING: yhc__jw_string(w, v->u.s, YHC__JSON_LEN(v)); break;
    case YHC_JSON_NUMBER: yhc__jw_put(w, v->u.s, YHC__JSON_LEN(v)); break; /* exact text */
    case YHC_JSON_BOOL:
      if (v->tag & YHC__JSON_FLAG)
        yhc__jw_put(w, "true", 4);
      else
        yhc__jw_put(w, "false", 5);
      break;
    default: yhc__jw_put(w, "null", 4); break;
  }
}

/* Walks the subtree in node order. The open containers are kept on a stack of their own
   (growing on the heap past 64), so a parsed document of any depth copies without recursion
   and without counting against YHC_JW_MAX_DEPTH. */
YHCDEF void yhc_jw_value(yhc_jw *w, const yhc_json *v) {
  const yhc_json *local[64], **stk = local, **grown;
  size_t sp = 0, cap = 64;
  unsigned t;
  if (!v) {
    yhc__jw_fail(w, YHC_ERR_INVALID);
    return;
  }
  if (yhc__jw_pre_value(w)) return;
  for (;;) {
    if (sp && (v->tag & YHC__JSON_MEMBER)) {
      yhc__jw_string(w, v[-1].u.s, YHC__JSON_LEN(&v[-1]));
      yhc__jw_put(w, ":", 1);
    }
    t = YHC__JSON_TYPE(v);
    if (t == YHC_JSON_ARRAY || t == YHC_JSON_OBJECT) {
      yhc__jw_put(w, t == YHC_JSON_OBJECT ? "{" : "[", 1);
      if (YHC__JSON_LEN(v)) {
        if (sp == cap) {
          if (cap > SIZE_MAX / 2 / sizeof *stk) {
            yhc__jw_fail(w, YHC_ERR_NOMEM);
            break;
          }
          grown = YHC__CAST(const yhc_json **,
                            stk == local ? YHC_MALLOC(2 * cap * sizeof *stk)
                                         : YHC_REALLOC(YHC__CAST(void *, stk), 2 * cap * sizeof *stk));
          if (!grown) {
            yhc__jw_fail(w, YHC_ERR_NOMEM);
            break;
          }
          if (stk == local) memcpy(YHC__CAST(void *, grown), local, sizeof local);
          stk = grown;
          cap *= 2;
        }
        stk[sp++] = v;
        v = yhc_json_first(v);
        continue;
      }
      yhc__jw_put(w, t == YHC_JSON_OBJECT ? "}" : "]", 1);
    } else {
      yhc__jw_scalar(w, v);
    }
    /* v is complete: close every container it was the last child of */
    while (sp && (v->tag & YHC__JSON_LAST)) {
      v = stk[--sp];
      yhc__jw_put(w, YHC__JSON_TYPE(v) == YHC_JSON_OBJECT ? "}" : "]", 1);
    }
    if (!sp || w->err) break;
    yhc__jw_put(w, ",", 1);
    v = yhc_json_next(v);
  }
  if (stk != local) YHC_FREE(YHC__CAST(void *, stk));
}

YHCDEF int yhc_jw_finish(yhc_jw *w) {
  if (w->err) return w->err;
  if (w->depth || !w->need_comma[0]) return YHC_ERR_INVALID; /* unclosed, or nothing written */
  return 0;
}
