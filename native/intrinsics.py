"""LLVM-level helpers for the native audio path: pointer casts and a memory fence."""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["int_to_voidptr", "voidptr_to_int", "fence", "call_write", "call_i32_p", "call_i32_ppp", "call_pa_write"]


@intrinsic
def int_to_voidptr(typingctx, addr):
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@intrinsic
def voidptr_to_int(typingctx, ptr):
    sig = types.int64(types.voidptr)

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], cgutils.intp_t)

    return sig, codegen


@intrinsic
def fence(typingctx):
    """A sequentially consistent memory fence (orders the ring's data and counter stores)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


def _fn(builder, addr, ret, args):
    """The integer ``addr`` as a pointer to a C function returning ``ret`` with ``args`` (LLVM types)."""
    from llvmlite import ir

    return builder.inttoptr(addr, ir.FunctionType(ret, args).as_pointer())


@intrinsic
def call_write(typingctx, fn_addr, fd, buf_addr, nbytes):
    """Call the C function at ``fn_addr`` as ``ssize_t write(int fd, const void *buf, size_t n)``
    (libc's ``write``, whose address the caller passes in: the compiled code stays cacheable).
    Used to signal an eventfd from the audio callback; returns what ``write`` returns."""
    sig = types.int64(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        i64, i32 = ir.IntType(64), ir.IntType(32)
        fn = _fn(builder, args[0], i64, [i32, cgutils.voidptr_t, i64])
        return builder.call(fn, [builder.trunc(args[1], i32), builder.inttoptr(args[2], cgutils.voidptr_t), args[3]])

    return sig, codegen


@intrinsic
def call_i32_p(typingctx, fn_addr, a):
    """Call the C function at ``fn_addr`` as ``int f(void *a)`` (``a`` an address)."""
    sig = types.int32(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        vp = cgutils.voidptr_t
        fn = _fn(builder, args[0], ir.IntType(32), [vp])
        return builder.call(fn, [builder.inttoptr(args[1], vp)])

    return sig, codegen


@intrinsic
def call_i32_ppp(typingctx, fn_addr, a, b, c):
    """Call the C function at ``fn_addr`` as ``int f(void *a, void *b, void *c)`` (addresses)."""
    sig = types.int32(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        vp = cgutils.voidptr_t
        fn = _fn(builder, args[0], ir.IntType(32), [vp, vp, vp])
        return builder.call(fn, [builder.inttoptr(x, vp) for x in args[1:]])

    return sig, codegen


@intrinsic
def call_pa_write(typingctx, fn_addr, stream, data, nbytes):
    """Call libpulse's ``int pa_stream_write(pa_stream *s, const void *data, size_t nbytes,
    pa_free_cb_t free_cb, int64_t offset, pa_seek_mode_t seek)`` at ``fn_addr`` with no free
    callback (the data came from ``pa_stream_begin_write``), offset 0 and ``PA_SEEK_RELATIVE``."""
    sig = types.int32(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        vp, i64, i32 = cgutils.voidptr_t, ir.IntType(64), ir.IntType(32)
        fn = _fn(builder, args[0], i32, [vp, vp, i64, vp, i64, i32])
        return builder.call(fn, [builder.inttoptr(args[1], vp), builder.inttoptr(args[2], vp), args[3],
                                 ir.Constant(vp, None), ir.Constant(i64, 0), ir.Constant(i32, 0)])

    return sig, codegen
