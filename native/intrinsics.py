"""LLVM-level helpers for the native audio path: pointer casts and a memory fence."""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["int_to_voidptr", "voidptr_to_int", "fence", "call_write"]


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


@intrinsic
def call_write(typingctx, fn_addr, fd, buf_addr, nbytes):
    """Call the C function at ``fn_addr`` as ``ssize_t write(int fd, const void *buf, size_t n)``
    (libc's ``write``, whose address the caller passes in: the compiled code stays cacheable).
    Used to signal an eventfd from the audio callback; returns what ``write`` returns."""
    sig = types.int64(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        i64, i32 = ir.IntType(64), ir.IntType(32)
        fnty = ir.FunctionType(i64, [i32, cgutils.voidptr_t, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [builder.trunc(args[1], i32), builder.inttoptr(args[2], cgutils.voidptr_t), args[3]])

    return sig, codegen
