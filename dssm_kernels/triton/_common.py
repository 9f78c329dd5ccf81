"""Small @triton.jit helpers shared by the kernel files."""
import triton
import triton.language as tl

# Globals a compiled kernel reads must be tl.constexpr (the interpreter would accept plain floats).
_TWO_PI_HI = tl.constexpr(6.28125)  # 8 significant bits: k * _TWO_PI_HI is exact for the k a phase can reach
_TWO_PI_LO = tl.constexpr(0.0019353071795864769252867665590057683943)
_INV_TWO_PI = tl.constexpr(0.15915494309189533576888376337251436203)


@triton.jit
def cos_sin(phase):
    """cos and sin of `phase` after reduction to [-pi, pi] (Cody-Waite, two-part 2*pi).

    Reducing first keeps the result accurate whatever sin/cos lower to (fast approximations are
    only accurate near zero), so a phase l * Im(x) at large l loses nothing beyond its own rounding.
    """
    k = tl.floor(phase * _INV_TWO_PI + 0.5)
    r = (phase - k * _TWO_PI_HI) - k * _TWO_PI_LO
    return tl.cos(r), tl.sin(r)


@triton.jit
def cexp(re, im):
    """exp(re + i im) as (real, imag)."""
    mag = tl.exp(re)
    c, s = cos_sin(im)
    return mag * c, mag * s


@triton.jit
def round_to_bf16(x):
    """float32 -> bfloat16 rounded to nearest even, as the GPU and torch round. Done by hand on the
    bits because the Triton interpreter's own cast truncates (up to one bf16 ulp off, twice torch's
    error); on a GPU it costs three integer ops and the final cast is then exact."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True).to(tl.bfloat16)


@triton.jit
def load_complex(ptr, off, mask):
    """(real, imag) of the complex elements at real-view offsets `off` (0 where masked)."""
    return tl.load(ptr + off, mask=mask, other=0.0), tl.load(ptr + off + 1, mask=mask, other=0.0)


@triton.jit
def load_modes(dA_ptr, dB_ptr, C_ptr, off, mask):
    """(dA, dB, C) of a diagonal SSM at real-view offsets `off`, as six real tiles (re, im each)."""
    dar, dai = load_complex(dA_ptr, off, mask)
    dbr, dbi = load_complex(dB_ptr, off, mask)
    cr, ci = load_complex(C_ptr, off, mask)
    return dar, dai, dbr, dbi, cr, ci


@triton.jit
def load_complex_if(ptr, off, mask, zero, PRESENT: tl.constexpr):
    """load_complex of an optional input when PRESENT; (zero, zero) when it is absent (the launcher then
    passes a placeholder pointer that must not be read)."""
    if PRESENT:
        re, im = load_complex(ptr, off, mask)
    else:
        re, im = zero, zero
    return re, im


@triton.jit
def store_complex(ptr, off, re, im, mask):
    """Stores re + i im at real-view offsets `off` (load_complex's counterpart)."""
    tl.store(ptr + off, re, mask=mask)
    tl.store(ptr + off + 1, im, mask=mask)


@triton.jit
def program_block(size, BLOCK: tl.constexpr):
    """(row, idx, mask) of a one-dimensional grid, program = row * cdiv(size, BLOCK) + block: this program's
    row (64-bit, so row * size cannot wrap), its BLOCK indices and which of them are < size."""
    blocks = tl.cdiv(size, BLOCK)
    row = (tl.program_id(0) // blocks).to(tl.int64)
    idx = (tl.program_id(0) % blocks) * BLOCK + tl.arange(0, BLOCK)
    return row, idx, idx < size
