/*
 * The per-task "Python state" of ivyrt on CPython 3.11: the fields of the
 * worker's one PyThreadState that describe *which Python code is running*,
 * saved when a task parks and put back when it resumes (`swap.rs`).
 *
 * Written in C, compiled by build.rs against the headers of the interpreter
 * the extension is built for, so that every field access is checked by the
 * compiler against the real `struct _ts` (PyO3 declares it opaque). The list
 * of fields is greenlet's for 3.11 (src/greenlet/TPythonState.cpp,
 * TExceptionState.cpp): context (+ context_ver bump), cframe + its
 * use_tracing and current_frame, the recursion depth, the data stack
 * (chunk/top/limit), the exception being handled (exc_info + exc_state) and
 * the trashcan nesting. Everything else (trace functions, the threading.local
 * dict, async_exc, the gilstate counter) is the OS thread's, shared by the
 * worker's tasks as it is by the Python code of one ordinary thread.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdlib.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "ivyrt's pystate.c is the CPython 3.11 layout; build.rs compiles it only for 3.11"
#endif

/* CPython's own chunk size for data stacks (Python/pystate.c). */
#define IVYRT_CHUNK_SIZE (16 * 1024)

typedef struct {
    PyObject *context; /* strong reference, or NULL */
    _PyCFrame *cframe;
    struct _PyInterpreterFrame *current_frame;
    _PyStackChunk *datastack_chunk;
    PyObject **datastack_top;
    PyObject **datastack_limit;
    /* NULL means "the thread state's own exc_state" (its address is the
     * worker's, the same for every task of the worker). */
    _PyErr_StackItem *exc_info;
    _PyErr_StackItem exc_state; /* exc_value is a strong reference */
    int use_tracing;
    int recursion_depth;
    int trash_delete_nesting;
} ivyrt_pystate;

/* swap.rs reserves IVYRT_PYSTATE_SIZE bytes, 8-aligned, for one. */
#define IVYRT_PYSTATE_SIZE 128
_Static_assert(sizeof(ivyrt_pystate) <= IVYRT_PYSTATE_SIZE, "swap.rs's SavedState is too small");
_Static_assert(_Alignof(ivyrt_pystate) <= 8, "swap.rs's SavedState is 8-aligned");

size_t ivyrt_pystate_size(void) { return sizeof(ivyrt_pystate); }

/* Whether a fresh thread state looks as the 3.11 layout says: a run-time
 * check, on top of the compiler's, that the headers built against are the
 * interpreter's that loaded us (a wheel built for another 3.11 patch release
 * keeps the layout; 3.11's ABI is stable within the minor version). */
int ivyrt_pystate_layout_ok(PyThreadState *ts, PyInterpreterState *interp) {
    return ts->interp == interp && ts->cframe == &ts->root_cframe &&
           ts->exc_info == &ts->exc_state && ts->datastack_chunk == NULL &&
           ts->context == NULL;
}

/* A task's state before its first bytecode: nothing on its frame stack, no
 * exception handled, no context (the task body enters its own), and a data
 * stack root chunk of its own (`chunk`, from ivyrt_chunk_new). */
void ivyrt_pystate_fresh(ivyrt_pystate *s, PyThreadState *ts, _PyStackChunk *chunk) {
    memset(s, 0, sizeof(*s));
    s->cframe = &ts->root_cframe;
    /* _PyThreadState_UpdateTracingState's rule: the thread's trace and
     * profile functions are shared by its tasks. */
    s->use_tracing = (ts->tracing == 0 && (ts->c_tracefunc != NULL || ts->c_profilefunc != NULL)) ? 255 : 0;
    chunk->previous = NULL;
    chunk->top = 0;
    s->datastack_chunk = chunk;
    /* push_chunk's rule for a root chunk: skip its first slot, so that
     * _PyThreadState_PopFrame never pops (and frees) the root chunk. */
    s->datastack_top = &chunk->data[1];
    s->datastack_limit = (PyObject **)(((char *)chunk) + chunk->size);
}

/* An empty state with no data stack yet (CPython allocates one at its first
 * frame, from its arena allocator): what the worker's state holds while a
 * finalizer that parked on the idle state waits (swap.rs). */
void ivyrt_pystate_clean(ivyrt_pystate *s, PyThreadState *ts) {
    memset(s, 0, sizeof(*s));
    s->cframe = &ts->root_cframe;
    s->use_tracing = (ts->tracing == 0 && (ts->c_tracefunc != NULL || ts->c_profilefunc != NULL)) ? 255 : 0;
}

/* Drops a state that has no frames left and whose data stack chunks, if any,
 * are all CPython's (a clean state after use). With the GIL. */
void ivyrt_pystate_discard(ivyrt_pystate *s) {
    Py_CLEAR(s->context);
    Py_CLEAR(s->exc_state.exc_value);
    _PyStackChunk *chunk = s->datastack_chunk;
    s->datastack_chunk = NULL;
    while (chunk != NULL) {
        _PyStackChunk *prev = chunk->previous;
        PyObjectArenaAllocator arena;
        PyObject_GetArenaAllocator(&arena);
        arena.free(arena.ctx, chunk, chunk->size);
        chunk = prev;
    }
}

/* Saves the Python state running on `ts` into `out` and makes `in` the one
 * running. Called with the GIL held by `ts` (so another thread reading `ts`
 * under the GIL, e.g. sys._current_frames(), sees one coherent state).
 * `out` and `in` must differ. */
void ivyrt_pystate_swap(PyThreadState *ts, ivyrt_pystate *out, const ivyrt_pystate *in) {
    out->context = ts->context;
    out->cframe = ts->cframe;
    out->use_tracing = ts->cframe->use_tracing;
    out->current_frame = ts->cframe->current_frame;
    out->recursion_depth = ts->recursion_limit - ts->recursion_remaining;
    out->datastack_chunk = ts->datastack_chunk;
    out->datastack_top = ts->datastack_top;
    out->datastack_limit = ts->datastack_limit;
    out->exc_info = ts->exc_info == &ts->exc_state ? NULL : ts->exc_info;
    out->exc_state = ts->exc_state;
    out->trash_delete_nesting = ts->trash_delete_nesting;

    ts->context = in->context;
    /* Invalidates contextvars' per-thread lookup cache. */
    ts->context_ver++;
    ts->cframe = in->cframe;
    ts->cframe->use_tracing = in->use_tracing;
    ts->cframe->current_frame = in->current_frame;
    ts->recursion_remaining = ts->recursion_limit - in->recursion_depth;
    ts->datastack_chunk = in->datastack_chunk;
    ts->datastack_top = in->datastack_top;
    ts->datastack_limit = in->datastack_limit;
    ts->exc_state = in->exc_state;
    ts->exc_info = in->exc_info != NULL ? in->exc_info : &ts->exc_state;
    ts->trash_delete_nesting = in->trash_delete_nesting;
}

/* The end of a task's saved state, with the GIL: its frames have all
 * returned, so what is left is its data stack's root chunk (returned, to be
 * freed by ivyrt_chunk_free) and normally no reference. Chunks above the
 * root (only if a task ended mid-frame, which cannot happen) are freed the
 * way CPython frees them. */
_PyStackChunk *ivyrt_pystate_finish(ivyrt_pystate *s) {
    Py_CLEAR(s->context);
    Py_CLEAR(s->exc_state.exc_value);
    _PyStackChunk *chunk = s->datastack_chunk;
    s->datastack_chunk = NULL;
    if (chunk == NULL) {
        return NULL;
    }
    while (chunk->previous != NULL) {
        _PyStackChunk *prev = chunk->previous;
        PyObjectArenaAllocator arena;
        PyObject_GetArenaAllocator(&arena);
        arena.free(arena.ctx, chunk, chunk->size);
        chunk = prev;
    }
    return chunk;
}

/* Runs body(arg, chunk) with `chunk` a root chunk of IVYRT_CHUNK_SIZE bytes
 * in this function's own frame, i.e. on the calling task's stack, just above
 * the frames of the task's code (swap.rs: why). The caller guarantees the
 * stack has room for it far above its guard page (a task's stack of at least
 * 256 KiB, entered moments ago): build.rs compiles this file without stack
 * clash probes, so that the chunk's untouched pages stay untouched. */
void ivyrt_with_stack_chunk(void (*body)(void *, _PyStackChunk *), void *arg) {
    union {
        _PyStackChunk chunk;
        char bytes[IVYRT_CHUNK_SIZE];
    } mem;
    mem.chunk.previous = NULL;
    mem.chunk.size = sizeof(mem);
    mem.chunk.top = 0;
    body(arg, &mem.chunk);
}

/* A root chunk of `size` bytes at `mem` (16-aligned): the top reserve of the
 * task's ivy stack (swap.rs's `with_root_chunk`: why there). */
_PyStackChunk *ivyrt_chunk_at(void *mem, size_t size) {
    _PyStackChunk *chunk = mem;
    chunk->previous = NULL;
    chunk->size = size;
    chunk->top = 0;
    return chunk;
}

/* A root chunk for a task's data stack, from malloc: root chunks are never
 * freed by CPython (push_chunk skips their first slot) and never reach
 * PyThreadState_Clear (the worker's state holds its idle state's chunks when
 * it is cleared), so ivyrt owns them. malloc keeps freed ones for reuse
 * without the mmap/munmap pair of CPython's arena allocator. */
_PyStackChunk *ivyrt_chunk_new(void) {
    _PyStackChunk *chunk = malloc(IVYRT_CHUNK_SIZE);
    if (chunk != NULL) {
        chunk->previous = NULL;
        chunk->size = IVYRT_CHUNK_SIZE;
        chunk->top = 0;
    }
    return chunk;
}

/* Frees a root chunk made by ivyrt_chunk_new. */
void ivyrt_chunk_free(_PyStackChunk *chunk) { free(chunk); }
