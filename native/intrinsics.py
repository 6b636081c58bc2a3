"""LLVM-level helpers for the native audio path: pointer casts and a memory fence."""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["int_to_voidptr", "voidptr_to_int", "fence"]


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
