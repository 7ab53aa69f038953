/* ==== Public API: JSON (RFC 8259) parse, query, write =============================== */

typedef enum yhc_json_type {
  YHC_JSON_NONE = 0, /* what queries on a missing value report */
  YHC_JSON_NULL,
  YHC_JSON_BOOL,
  YHC_JSON_NUMBER,
  YHC_JSON_STRING,
  YHC_JSON_ARRAY,
  YHC_JSON_OBJECT
} yhc_json_type;

/* A parsed document. Every value in it lives in the document's own arena: one
   yhc_json_free() releases the whole tree and nothing inside may be freed on its own.
   Values are read-only; pointers to them stay valid until the document is freed. */
typedef struct yhc_json_doc yhc_json_doc;
typedef struct yhc_json yhc_json;

typedef struct yhc_json_opts {
  int max_depth;          /* nesting limit; 0 = 512 */
  size_t max_bytes;       /* input size limit; 0 = no limit beyond size_t */
} yhc_json_opts;

/* Parses `len` bytes (not NUL-terminated necessarily). Strict: UTF-8 validated, no trailing
   garbage, no comments, no byte order mark, duplicate keys kept (lookup finds the first).
   On failure returns NULL and fills `err` (if not NULL) with code YHC_ERR_JSON (or
   NOMEM/LIMIT), a message ending "at offset N" and the byte offset N. `opts` may be NULL.
   The input is copied, not kept: the document costs about len + 16 bytes per value. */
YHCDEF yhc_json_doc *yhc_json_parse(const char *text, size_t len, const yhc_json_opts *opts,
                                    yhc_error *err);
YHCDEF void yhc_json_free(yhc_json_doc *doc);
YHCDEF const yhc_json *yhc_json_root(const yhc_json_doc *doc);

/* Queries accept NULL and answer "missing" (NONE / NULL / the default), so lookups chain:
   yhc_json_get(yhc_json_get(root, "offer"), "providerId"). */
YHCDEF yhc_json_type yhc_json_typeof(const yhc_json *v);
YHCDEF const yhc_json *yhc_json_get(const yhc_json *obj, const char *key);
YHCDEF const yhc_json *yhc_json_getn(const yhc_json *obj, const char *key, size_t key_len);
/* The index-th element; O(1) in an array of scalars, else one step per element skipped.
   On an object it gives the index-th member's value (its key via yhc_json_key). */
YHCDEF const yhc_json *yhc_json_at(const yhc_json *arr, size_t index);
YHCDEF size_t yhc_json_len(const yhc_json *v); /* elements, members, or string bytes; O(1) */

/* Iteration over an array's elements or an object's members (in document order):
     for (const yhc_json *m = yhc_json_first(obj); m; m = yhc_json_next(m))
       use yhc_json_key(m) and m itself as the value. */
YHCDEF const yhc_json *yhc_json_first(const yhc_json *container);
YHCDEF const yhc_json *yhc_json_next(const yhc_json *v);
YHCDEF yhc_str yhc_json_key(const yhc_json *member); /* {NULL,0} for array elements */

/* Typed getters with defaults: the default comes back when v is missing or of another type.
   Strings are NUL-terminated and may contain NUL bytes (use the yhc_str form for those).
   yhc_json_int returns the default unless the number is an integer that fits int64 exactly
   (so 1e400, 1.5 and 2^63 do not silently become something else; 1e2 and 100.0 are 100).
   Numbers are converted from their source text on each call (parsing stays fast): int64
   exactly, double correctly rounded whatever the C locale; out of range gives +-inf or 0. */
YHCDEF yhc_str yhc_json_str(const yhc_json *v, yhc_str def);
YHCDEF const char *yhc_json_cstr(const yhc_json *v, const char *def);
YHCDEF int64_t yhc_json_int(const yhc_json *v, int64_t def);
YHCDEF int yhc_json_int_ok(const yhc_json *v, int64_t *out); /* 1 if exact int64 */
YHCDEF double yhc_json_num(const yhc_json *v, double def);
YHCDEF int yhc_json_bool(const yhc_json *v, int def);
YHCDEF yhc_str yhc_json_raw_number(const yhc_json *v); /* source text, not NUL-terminated */

/* Writer: builds JSON text into a yhc_buf the caller owns, escaping as RFC 8259 requires
   (control characters as \u00XX, '"' and '\\' escaped; UTF-8 passed through; invalid UTF-8
   is an error). Commas and nesting are tracked for you. Errors are sticky: check
   yhc_jw_finish() once at the end; it returns 0 when the text is complete (one top-level
   value, everything closed) and valid, otherwise the first error: YHC_ERR_JSON (invalid
   UTF-8, NaN or infinity), YHC_ERR_INVALID (misuse: a value where a key belongs, a second
   top-level value, an unbalanced end, a NULL string, nothing written), YHC_ERR_LIMIT (deeper
   than YHC_JW_MAX_DEPTH) or YHC_ERR_NOMEM. The output buffer is the caller's either way. */
#define YHC_JW_MAX_DEPTH 64
typedef struct yhc_jw {
  yhc_buf *out;
  int depth;
  int err; /* 0 or a yhc_err */
  unsigned char need_comma[YHC_JW_MAX_DEPTH + 1];
  unsigned char in_object[YHC_JW_MAX_DEPTH + 1];
  unsigned char after_key;
} yhc_jw;

YHCDEF void yhc_jw_init(yhc_jw *w, yhc_buf *out);
YHCDEF void yhc_jw_obj_begin(yhc_jw *w);
YHCDEF void yhc_jw_obj_end(yhc_jw *w);
YHCDEF void yhc_jw_arr_begin(yhc_jw *w);
YHCDEF void yhc_jw_arr_end(yhc_jw *w);
YHCDEF void yhc_jw_key(yhc_jw *w, const char *key);
YHCDEF void yhc_jw_keyn(yhc_jw *w, const char *key, size_t len);
YHCDEF void yhc_jw_str(yhc_jw *w, const char *s);
YHCDEF void yhc_jw_strn(yhc_jw *w, const char *s, size_t len);
YHCDEF void yhc_jw_int(yhc_jw *w, int64_t v);
YHCDEF void yhc_jw_num(yhc_jw *w, double v); /* shortest text that reads back exactly */
YHCDEF void yhc_jw_bool(yhc_jw *w, int v);
YHCDEF void yhc_jw_null(yhc_jw *w);
YHCDEF void yhc_jw_raw(yhc_jw *w, const char *json, size_t len); /* trusted, already JSON */
/* Copies a parsed value (numbers as their source text). A subtree of any depth: only the
   containers opened with yhc_jw_obj_begin/arr_begin count against YHC_JW_MAX_DEPTH. */
YHCDEF void yhc_jw_value(yhc_jw *w, const yhc_json *v);
YHCDEF int yhc_jw_finish(yhc_jw *w);

