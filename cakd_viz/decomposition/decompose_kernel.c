/* decompose_kernel.c -- fused per-sample split of the distillation KL into BCD, SCD and WCD.
 *
 * The CPU path of cakd_viz.decompose. Built on first use by cakd_viz/native.py with the system C compiler
 * (plain gnu99 + libm + pthreads, no Python headers) and called through ctypes by
 * cakd_viz/decomposition/native_path.py; cakd_viz/decomposition/tensor_path.py computes the same
 * formulation with tensor ops (CUDA, and CPUs without a compiler). On x86-64 the hot passes have
 * AVX-512 and AVX2 (+ FMA, F16C) versions, chosen at run time by CPU checks; everything else runs the
 * portable scalar path of the same maths (also used by the tests as a second opinion).
 *
 * WHAT IS COMPUTED, per row (sample) of teacher logits t and student logits s (C classes, float32 or
 * float16, read where they lie), temperature T, and a strong set S chosen by a grouping rule (W = the rest):
 *
 *     p = softmax(t / T), q = softmax(s / T), p_G = sum_{i in G} p_i, p^G = p restricted to G, renormalised
 *     KL(p || q) = BCD + p_S SCD + p_W WCD
 *     BCD = KL([p_S, p_W] || [q_S, q_W]),  SCD = KL(p^S || q^S) (0 if |S| = 1),  WCD = KL(p^W || q^W)
 *
 * THE FORMULATION, and why it is accurate.
 * Let d_i = (t_i - s_i) / T, the difference of the raw logits, taken before any shift. Then
 * q^G_i = p^G_i e^{-d_i} / E_{p^G}[e^{-d}], and with the group mean dbar = E_{p^G}[d] and u_i = dbar - d_i
 * (so that E_{p^G}[u] = 0):
 *
 *     KL(p^G || q^G) = E[d] + log E[e^{-d}] = log E[e^u] = log1p( E_{p^G}[phi(u)] ),  phi(u) = e^u - 1 - u >= 0
 *
 * Every summand p^G_i phi(u_i) is >= 0: the sum has no cancellation, and each term keeps the relative
 * accuracy of its factors. phi(u) is computed from u itself (its series where |u| is small, where
 * e^u - 1 - u would cancel), never as the difference of two nearly equal sums. (cakd_viz's decompose
 * computes each group term as A_G - p_G c_G from float32 sums: an absolute error of ~1e-7 on a KL that
 * may be 1e-8, which is what broke near-identical students.) An error e in dbar, from the rounding of the
 * weights, moves the result only by O(e^2 + e KL): d/de E[phi(u + e)] = E[e^u - 1] = E[phi(u)].
 *
 * The two groups combine the same way one level up. q_G = p_G e^{K_G} / sum_H p_H e^{K_H} with
 * K_G = log E_{p^G}[e^{-d}] = KL_G - dbar_G; with D = K_S - K_W, v_S = p_W D, v_W = -p_S D (a centred
 * pair: p_S v_S + p_W v_W = 0):
 *
 *     BCD = log(p_S e^{v_S} + p_W e^{v_W}) = log1p(p_S phi(v_S) + p_W phi(v_W)),  log q_S = log p_S + v_S - BCD
 *
 * and KL = BCD + p_S SCD + p_W WCD is assembled from its parts, so the identity holds to rounding.
 * log p_S and log p_W come from the groups' log-sum-exps (p_W directly, never as 1 - p_S). The one
 * first-order sensitivity left is BCD's to the rounding of D's parts (KL_G, dbar_S - dbar_W) where BCD is
 * tiny next to the spread of d inside the groups: a student matching the group masses but not their
 * insides (up to 3e-4 relative was measured there). Each row estimates that error (EPS_D times the size
 * of D's parts, times dBCD/dD); where it could exceed REDO_REL = 1e-4 of BCD, passes 4 and 5 are done
 * again in double over the same strong set (groups_double: exp and phi_d per class, about 20 us a row of
 * 1,000 classes; 1-2% of the rows of real students at T <= 2). Rows that even leaves in doubt (EPS_D64),
 * rows whose teacher logits span more than SPAN64_MAX T and rows whose logits lie more than DX_MAX T apart
 * are marked (OUT_REDO), and the caller computes them in float64 (cakd_viz/decomposition/tensor_path.py).
 *
 * PER GROUP G (shifted by the group maximum, so that Zp >= 1: no group sum underflows):
 *     b_i = (t_i - max_G t) / T <= 0,   e^{b_i} = Zp p^G_i,   Zp = sum_G e^{b_i}
 *     dbar = d_ref + sum_G e^{b_i} (d_i - d_ref) / Zp       (d_ref: d at the group's teacher argmax)
 *     KL_G = log1p(F / Zp),  F = sum_G e^{b_i} phi(u_i),  u_i = dbar - d_i = dbar_c - (d_i - d_ref)
 * d_i - d_ref is formed in double from the exact float inputs, so that a student offset from the teacher
 * by a constant (a softmax-invariant shift) still gets it to full relative precision; where
 * max |t - s| <= T it is formed in float, then good to 1.2e-7 absolute, which is enough. Where moreover
 * the teacher's logits span at most 20 T (pass 4's common way, AVX-512), both groups share one shift
 * (max t) and one reference (the argmax): every weight stays >= e^-20, far from float32's underflow,
 * and the per-lane group selects go away. Any shift and any reference give the same maths.
 * e^{b_i} phi(u_i) is evaluated in one of three ways, chosen per row (pass 5):
 *   series   max |t - s| <= 0.1 T, so every |u| <= 0.2: e^b u^2 (1/2 + u/6 + ... + u^5/7!).
 *   unified  u = n ln2 + r (|r| <= ln2/2), q = phi(r) by its series, E = e^b e^r = e^b (1 + r + q):
 *            e^b phi(u) = (scalef(E, n) - E) + e^b (q - n ln2), exactly e^b q where n = 0 and without
 *            early overflow elsewhere: one exp's worth of work per class; the subtractions lose at most
 *            a factor ~50 of relative accuracy (phi >= 0.054 once |u| >= ln2/2).
 *   wide     teacher logits spanning more than 80 T: e^b may have been flushed to 0 (b < -87) where
 *            e^{b+u} still counts, so e^{b+u} = exp((s_i - max_G t) / T + dbar) is taken from s, its
 *            argument in double, where |u| >= 1/8.
 * F overflowing (unified) or an argument above 79 (wide) means KL_G >~ 70 nats; there
 * KL_G = log kappa + log Zq - log Zp in double (kappa = e^{(max_G s - max_G t)/T + dbar}, Zq = sum_G
 * e^{(s_i - max_G s)/T}), at no risk of cancellation. A single-class group has KL_G = 0 exactly.
 *
 * PRECISION. Float32 per element where the result is relative (e^b: Cody-Waite + Cephes' polynomial,
 * ~1 ulp plus 6e-8 |b|; phi; e^r), double where a difference could cancel (d - d_ref unless small, the
 * wide argument), for the sums (AVX-512: float partials of 4 terms per lane first) and for the per-row
 * assembly.
 *
 * PASSES per row (all but the first over per-thread scratch that stays in L1 for C up to a few thousand):
 *   1. read t, s from the caller's rows (float16 widened in registers by F16C), copy them as float32 into
 *      the row scratch (padded to a multiple of 16 with each row's maximum), argmaxes, finiteness,
 *      max |t - s|, the teacher's span, per-lane maxima (a lower bound for top-k); on AVX-512 the later
 *      students of one call read only their own row (pass1_student_avx512: the teacher's is in scratch)
 *   2. the grouping rule writes the byte mask (1 = S, 0 = W, 2 = padding). top-k (k <= 32) ranks the
 *      few classes at or above a lower bound from pass 1's lane maxima (branch-free on AVX-512) and
 *      keeps k + 1 or k + 2 entries, which give W's maximum too; top-k (k > 32) and mass:P bisect on
 *      the threshold value (a masked count or masked probability sum per probe). On AVX-512, mass:P
 *      first works on float probabilities (mass_float_avx512): v from pass 1's lane maxima where they
 *      hold P (a peaked row), else by selection: a band of likely values from 32 strided samples and a
 *      total estimated from them and the lane maxima, compacted by the pass that computes the
 *      probabilities (it holds v in 92-97% of rows), then a band of the band's candidates (sampled
 *      the same way), and the last few dozen ranked (a pivot split where a band misses v); the set is
 *      kept where a bound on the float rounding shows every decision certain, and the rest (a few rows
 *      in a thousand) bisect in double; a certain set is written with its groups' maxima, sizes and
 *      references (mass_groups_avx512)
 *   3. group teacher maxima, |S|, reference classes (skipped for top-k, whose list has them, and for
 *      mass:P's certain rows)
 *   4. e^b and d - d_ref into scratch; Zp and sum e^b (d - d_ref) per group
 *   5. F per group (skipped when no group has two classes)
 * and the row's terms in double. Passes 4 and 5 also prefetch the row after next (hardware prefetchers
 * stop at 4 KB pages, about one row).
 *
 * STRONG SETS: the rules of docs/architecture.md §4 that have a code here (../grouping/rules.h, RULE_TARGET
 * to RULE_CORR; a rule without one never reaches this kernel: decompose computes it with its float64 tensor
 * path), the same sets as cakd_viz.grouping.strong_mask and the loss's kernels (tests/test_strong_sets.py):
 * equal logits rank by class index, lowest first; mass:P is decided in float64, the cumulative mass
 * compared with P times the total without rounding the product.
 *
 * LOGIT STANDARDIZATION (the standardize argument; Sun et al., CVPR 2024, arXiv 2403.01427): each row's teacher
 * and student logits are z-scored separately, z' = (z - M) / (std + LS_EPS), std with Bessel's correction, before
 * T. No standardized copy is made: softmax ignores the mean, so p = softmax(t a_t), q = softmax(s a_s) with the
 * per-row scales a = 1 / ((std + LS_EPS) T), and everything above holds with
 *     b_i = (t_i - max_G t) a_t,    d_i = (t_i - s_i - (M_t - M_s)) a_t + (s_i - M_s) (a_t - a_s)
 * (d_i = (t'_i - s'_i) / T exactly, written so that a student equal to its teacher gets d = 0 exactly, even
 * where the compiler fuses a multiply and an add, and a near one keeps d to full relative precision). The means
 * and scales come from the exact float inputs in double, in two passes (the mean, then the centred squares:
 * row_scales), which also give max |d|; d is always formed in double (pass 4's P4_SCALED way). The strong set
 * is the standardized teacher's: top-k is unchanged by a positive scale, mass:P takes p = e^{(t - max t) a_t},
 * corr:R reads the caller's matrix (the correlation of the standardized teacher). The wide way and the
 * large-KL fallback take b + u from s as (s - mt') a_s + dbar, mt' = M_s + (max_G t - M_t) a_t / a_s.
 *
 * SEVERAL STUDENTS (dk_decompose_many): each row is taken by every student in turn while the teacher's row
 * is in cache; the strong set, the groups' sizes, maxima and references, and on AVX-512 pass 4's weights
 * e^b (for a student whose pass-4 way is the one they were computed in) are decided by the first and
 * reused by the others. They depend on the teacher only: every student gets its own call's results, bit
 * for bit. dk_scan runs pass 1 alone over one array: finiteness and each row's argmax.
 *
 * THREADS: rows are handed out in small blocks through an atomic counter (dynamic scheduling), so a
 * thread the OS deschedules holds up nobody: the others take the remaining blocks. The calling thread
 * works too. Helpers come from a pool started on first use and kept for the life of the process; between
 * calls they sleep on a condition variable (never spin), so a busy machine loses no CPU to them and a
 * call costs a wake-up, not a thread creation. One call at a time uses the pool; a concurrent call (from
 * another Python thread) runs on its calling thread alone. The caller picks the thread count
 * (cakd_viz/decomposition/threads.py: the CPUs actually free). Each row is computed independently:
 * results do not depend on the thread count, bit for bit.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sched.h>
#endif

#include "../grouping/rules.h" /* RULE_*: the grouping rules' codes, shared with the loss kernel */

#define DK_ABI 7 /* 2: rules.h's codes; 3: dk_scan, dk_decompose_many; 5: standardize; 6: redo64, no dk_decompose;
                     7: dk_strong_mask's size_out */
enum { DT_F32 = 0, DT_F16 = 1 };
enum { OK = 0, ERR_NONFINITE = 1, ERR_LABEL = 2, ERR_MEMORY = 3, ERR_ARGS = 4 };
enum { OUT_KL, OUT_BCD, OUT_SCD, OUT_WCD, OUT_PS, OUT_PW, OUT_QS, N_FOUT };
enum { OUT_SIZE, OUT_TPRED, OUT_SPRED, OUT_REDO, N_IOUT };
enum { FLAG_PORTABLE = 1, FLAG_NO_AVX512 = 2, FLAG_NO_REDO64 = 4 };

#define TOPK_SMALL 32    /* top-k by a list up to this k, by bisection on the threshold above */
#define PHI_POLY 0.125f  /* |u| below: phi(u) by its series (exact to 2e-10 there; 3e-9 up to 0.2) */
#define ARG_MAX 79.0     /* largest b + u pass 5 may exponentiate in float32 (e^88.7 overflows) */
#define SERIES_X 0.1     /* max |t - s| / T below this: every |u| <= 2 max|d| < 0.2, the series suffices */
#define FLOAT_D_X 1.0    /* max |t - s| / T up to this: d - d_ref in float is good to 1.2e-7 absolute */
#define SPAN_MAX 80.0    /* a row whose teacher logits span more than this times T may flush weights e^b */
#define COMMON_SPAN 20.0 /* up to this span / T, both groups may share pass 4's shift (weights >= 2e-9) */
#define DX_MAX 1e15      /* max |t - s| / T beyond this: the row is left to the caller (OUT_REDO), as are rows
                            whose BCD the float32 arithmetic cannot give to REDO_REL (see the header) */
#define REDO_REL 1e-4    /* BCD's estimated relative error above which a row is redone in double */
#define EPS_D64 1e-13    /* the same for the double redo: about n eps of a sum over 1000 classes */
#define SPAN64_MAX 700.0 /* the double redo's weights e^b stay normal up to this teacher span / T */
#ifndef EPS_D
#define EPS_D 1e-7       /* relative rounding of D's parts, measured (at most 4.4e-8 in adversarial rows) */
#endif
#define LS_EPS 1e-7      /* logit standardization: z' = (z - mean) / (std + LS_EPS), as the LS paper's code */

/* pass 4's and pass 5's ways, chosen per row (see the header) */
enum { P4_DOUBLE = 0, P4_FLOAT = 1, P4_COMMON = 2, P4_SCALED = 3 };
enum { P5_SERIES = 0, P5_UNIFIED = 1, P5_WIDE = 2 };
#define BLOCK_ELEMS 8192 /* rows per scheduling block: about this many elements */
#define MAX_THREADS 64
#define MAX_STUDENTS 256 /* students of one dk_decompose_many call */

/* ------------------------------------------------------------------------------------------------ */
/* The call, the per-thread scratch, the per-row state.                                              */

typedef struct {
    int64_t n, c;
    const char *t, *s; /* row r starts at t + r * t_stride bytes */
    int64_t t_stride, s_stride;
    int t_dtype, s_dtype;
    const int64_t *labels;     /* (n,) or NULL */
    const uint8_t *correlated; /* (c, c) or NULL */
    int rule;
    int64_t k;
    double mass_p, temp, inv_t;
    /* logit standardization (LS): per row, a copy of the call holds the row's own values (row_scales):
       inv_t = a_t and inv_s = a_s, a = 1 / ((std + LS_EPS) T), the means, and dmean = M_t - M_s,
       dinv = a_t - a_s. Without it inv_s = inv_t and the rest is 0. */
    int standardize;
    double inv_s, mean_t, mean_s, dmean, dinv;
    double *const *fout;
    int64_t *const *iout;
    uint8_t *mask_out; /* (n, c) strong sets, or NULL; with mask_only nothing else is computed */
    int64_t *size_out; /* (n,) |S| of each row, or NULL (with mask_only) */
    int mask_only;
    int64_t *scan_out; /* (n,) argmaxes of t, or NULL: then only pass 1 runs (t = s), checking finiteness */
    int simd;
    int redo64; /* redo in double the rows whose BCD float32 cannot give to REDO_REL (else: mark them) */
} call_t;

typedef struct {
    int64_t cp;                /* c rounded up to a multiple of 16: whole vectors, padding lanes masked */
    float *tf, *sf, *eb, *dd;  /* (cp,) row values, e^b, d - d_ref */
    double *eb64, *dd64;       /* (cp,) e^b and d - d_ref of the double redo */
    uint8_t *mask;             /* (cp + 8,) 1 = S, 0 = W, 2 = padding */
    double *pd;                /* (c,) mass: teacher probabilities in double; top-k with a large k: 1s */
    float *pf;                 /* (cp,) mass (AVX-512): teacher probabilities in float, unnormalised */
    float *pc;                 /* 2 x (c + 16) mass (AVX-512): the candidates' probabilities (two buffers) */
    float *sel;                /* (c + 16,) top-k, 2 x (c + 16) mass (AVX-512): the candidates (two buffers) */
    int32_t *cand;             /* (c + 16,) top-k: the candidates' classes */
    void *block;
} scratch_t;

typedef struct {
    int64_t size, ref;   /* classes in the group; its teacher argmax (lowest index) */
    float mt;            /* group maximum of t */
    double zp, dsum;     /* sum e^b, sum e^b (d - d_ref) */
    double dref, dbar_c; /* d_ref, and dbar - d_ref */
    double dbar;         /* d_ref + dbar_c = E_{p^G}[d] */
    double f, arg_max;   /* sum e^b phi(u); the largest b + u seen by pass 5 */
    double kl;           /* KL_G */
} group_t;

typedef struct {
    float tmax, smax, tmin;
    float dx;       /* max |t_i - s_i| */
    double dxs;     /* max |d_i|: dx / T, or (LS) from the standardized logits */
    float dref_f[2]; /* d_ref in float, as pass 4's float way computes d (so that d - d_ref is 0 at the reference) */
    int64_t targ, sarg;
    int finite;
    float lanes[16]; /* SIMD pass 1: maxima of t over its n_lanes lanes' classes (disjoint sets) */
    int n_lanes;
    int eb_common; /* mass:P on AVX-512 left pass 4's common-way weights e^b in sc->eb (see mass_expf_avx512) */
    const char *next_t, *next_s; /* the logits of the row after next (or NULL), and their lengths in bytes */
    int64_t next_tb, next_sb;
    group_t g[2]; /* 0 = S, 1 = W */
} row_t;

static int scratch_init(scratch_t *sc, int64_t c, int rule) {
    int64_t cp = (c + 15) / 16 * 16;
    size_t need = 4 * (size_t)cp * sizeof(float) + (size_t)cp + 8 + 2 * (size_t)cp * sizeof(double) + 1024; /* + slack */
    if (rule == RULE_MASS || rule == RULE_TOPK || rule == RULE_TOPK_TARGET) need += (size_t)c * sizeof(double) + 64;
    if (rule == RULE_TOPK || rule == RULE_TOPK_TARGET) need += (size_t)(c + 16) * (sizeof(float) + sizeof(int32_t)) + 128;
    if (rule == RULE_MASS) need += (4 * (size_t)(c + 16) + (size_t)cp) * sizeof(float) + 192;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, need) != 0) return -1;
    char *p = mem;
    memset(sc, 0, sizeof(*sc));
    sc->block = mem;
    sc->cp = cp;
#define TAKE(ptr, type, count)                                                                         \
    do { /* every array on a 64-byte boundary */                                                       \
        ptr = (type *)p;                                                                               \
        p += ((size_t)(count) * sizeof(type) + 63) / 64 * 64;                                          \
    } while (0)
    TAKE(sc->tf, float, cp);
    TAKE(sc->sf, float, cp);
    TAKE(sc->eb, float, cp);
    TAKE(sc->dd, float, cp);
    TAKE(sc->mask, uint8_t, cp + 8);
    TAKE(sc->eb64, double, cp);
    TAKE(sc->dd64, double, cp);
    if (rule == RULE_MASS || rule == RULE_TOPK || rule == RULE_TOPK_TARGET) TAKE(sc->pd, double, c);
    if (rule == RULE_TOPK || rule == RULE_TOPK_TARGET) {
        TAKE(sc->sel, float, c + 16);
        TAKE(sc->cand, int32_t, c + 16);
    }
    if (rule == RULE_MASS) { /* mass_pick_avx512's candidates (two buffers), mass_float_avx512's probabilities */
        TAKE(sc->sel, float, 2 * (c + 16));
        TAKE(sc->pc, float, 2 * (c + 16));
        TAKE(sc->pf, float, cp);
    }
#undef TAKE
    return 0;
}

/* The rows are streamed from memory (or a page-cache mapping) once. Hardware prefetchers stop at 4 KB
   page boundaries, about one row here, so passes 4 and 5 ask for the cache lines of the row after next
   (teacher in pass 4, student in pass 5, one line per vector they process): the memory traffic is
   spread over the arithmetic instead of stalling pass 1. */
static void next_row(const call_t *cl, int64_t r, row_t *row) {
    row->next_t = row->next_s = NULL;
    row->next_tb = row->next_sb = 0;
    if (r + 2 >= cl->n) return;
    row->next_t = cl->t + (r + 2) * cl->t_stride, row->next_s = cl->s + (r + 2) * cl->s_stride;
    row->next_tb = cl->c * (cl->t_dtype == DT_F16 ? 2 : 4), row->next_sb = cl->c * (cl->s_dtype == DT_F16 ? 2 : 4);
}

/* prefetch the j-th cache line of the row after next, t (which = 0) or s (which = 1), if there is one */
static inline void prefetch_line(const row_t *row, int which, int64_t j) {
    int64_t o = j * 64;
    if (which == 0 && o < row->next_tb) __builtin_prefetch(row->next_t + o, 0, 3);
    if (which == 1 && o < row->next_sb) __builtin_prefetch(row->next_s + o, 0, 3);
}

static inline void prefetch_rest(const row_t *row, int which, int64_t j) {
    for (; j * 64 < (which ? row->next_sb : row->next_tb); j++) prefetch_line(row, which, j);
}

/* ------------------------------------------------------------------------------------------------ */
/* Small scalar helpers.                                                                              */

/* IEEE half -> float, exactly (portable path; the AVX2 path uses F16C). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0) {
        float v = ldexpf((float)m, -24); /* zero or subnormal: m 2^-24, exact */
        return sign ? -v : v;
    }
    bits = e == 31 ? sign | 0x7f800000u | (m << 13) : sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double logaddexp(double x, double y) {
    if (x == -INFINITY) return y;
    if (y == -INFINITY) return x;
    return x > y ? x + log1p(exp(y - x)) : y + log1p(exp(x - y));
}

/* phi(v) = e^v - 1 - v in double, to full relative precision: the series where expm1(v) - v cancels. */
static double phi_d(double v) {
    if (fabs(v) < 0.1) {
        static const double inv_fact[] = {1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040,
                                          1.0 / 720,     1.0 / 120,    1.0 / 24,    1.0 / 6, 0.5};
        double s = 1.0 / 39916800;
        for (int i = 0; i < 9; i++) s = s * v + inv_fact[i];
        return v * v * s;
    }
    return expm1(v) - v;
}

/* LS: d_i from the exact inputs t_i, s_i (see the header), without the reference's d_ref */
static inline double ls_d(const call_t *cl, double t, double s) {
    return (t - s - cl->dmean) * cl->inv_t + (s - cl->mean_s) * cl->dinv;
}

/* the shift mt' with which b + u = (s - mt') inv_s + dbar in group G (max_G t = mt): mt itself without LS */
static inline double wide_shift(const call_t *cl, float mt) {
    return cl->standardize ? cl->mean_s + ((double)mt - cl->mean_t) * (cl->inv_t / cl->inv_s) : (double)mt;
}


/* ------------------------------------------------------------------------------------------------ */
/* Grouping rules: the byte mask of S (scalar code, cheap next to the passes but for mass:P).        */

/* The `cap` largest of t, ties to the lower class index, by an insertion list kept in (value desc,
   index asc) order: classes are offered in increasing index, and one equal to the list's last never
   enters (it has the higher index), so the list is exactly the rule's order. The top-k rules keep
   k + 1 or k + 2 entries: the entries past the k-th give the weak group's maximum and its class.
   Any subset of the classes that contains the final list may be offered (the AVX2 caller offers
   only the candidates its vector compare lets through). */
typedef struct {
    float val[TOPK_SMALL + 3]; /* + 1: a slot the branch-free placement may write to and ignore */
    int64_t idx[TOPK_SMALL + 3];
    int64_t filled, cap;
} toplist_t;

static inline void toplist_offer(toplist_t *l, float x, int64_t i) {
    if (l->filled == l->cap && !(x > l->val[l->cap - 1])) return;
    int64_t j = l->filled < l->cap ? l->filled++ : l->cap - 1;
    while (j > 0 && x > l->val[j - 1]) {
        l->val[j] = l->val[j - 1];
        l->idx[j] = l->idx[j - 1];
        j--;
    }
    l->val[j] = x;
    l->idx[j] = i;
}

/* mass:P. The classes in the teacher's order (logit desc, index asc), with probabilities
   p_i = exp((t_i - max t) / T) / sum in double; S = the first m of them, m = #{j : cum_j < P} + 1
   (cum_j the cumulative mass through the j-th; m clipped to C). Without sorting: v, the logit of the
   m-th class, is the largest value with mass(t >= v) >= P, found by bisection on the float's bits
   (at most 32 probes, each a masked sum over the row); S = {t > v} plus the classes at v, in index
   order, until the cumulative mass reaches P. The masses are summed in row order, not in the sorted
   order: a decision can differ from a strictly sequential cumsum only where the cumulative mass is
   within a few ulps (1e-16) of P. Works on unnormalised p, against P times their sum. */
static inline uint32_t float_key(float x) { /* monotone: x < y  <=>  key(x) < key(y), for non-NaN */
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b & 0x80000000u ? ~b : b | 0x80000000u;
}

static inline float key_float(uint32_t k) {
    uint32_t b = k & 0x80000000u ? k & 0x7fffffffu : ~k;
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* sum of p_i over the classes with t_i >= theta (t_i > theta when strict): one probe of the bisection */
typedef double (*mass_probe_t)(const float *t, const double *p, int64_t c, float theta, int strict);

static double mass_probe_scalar(const float *t, const double *p, int64_t c, float theta, int strict) {
    double m = 0.0; /* branch-free bodies: the compiler vectorises them */
    if (strict)
        for (int64_t i = 0; i < c; i++) m += p[i] * (double)(t[i] > theta);
    else
        for (int64_t i = 0; i < c; i++) m += p[i] * (double)(t[i] >= theta);
    return m;
}

/* unnormalised probabilities into p; returns their sum */
typedef double (*mass_exp_t)(const float *t, int64_t c, float tmax, double inv_t, double *p);

static double mass_exp_scalar(const float *t, int64_t c, float tmax, double inv_t, double *p) {
    double z = 0.0;
    for (int64_t i = 0; i < c; i++) {
        double x = ((double)t[i] - (double)tmax) * inv_t;
        p[i] = x < -746.0 ? 0.0 : exp(x);
        z += p[i];
    }
    return z;
}

/* The goal P Z as an exact sum hi + lo (fma: the rounding error of the product), and m >= P Z decided
   exactly for a computed mass m: m - hi is exact wherever m is within a factor 2 of hi (Sterbenz), and
   elsewhere the comparison is far from close. So [1, 1, ..., 1] (10 classes) reaches mass:0.9 only
   with all ten: 9 < 0.9 x 10 in exact arithmetic, although 0.9 x 10 rounds to 9. */
typedef struct {
    double hi, lo;
} goal_t;

static goal_t exact_product(double a, double b) {
    goal_t g = {a * b, 0.0};
    g.lo = fma(a, b, -g.hi);
    return g;
}

static inline int reaches(double m, goal_t g) { return !(m - g.hi < g.lo); }

/* The set both rules want: with v the largest value such that sum_{t_i >= v} p_i reaches the goal, the
   classes above v, then those at v in index order until the sum reaches the goal. mass:P: p the
   unnormalised probabilities, goal P sum p. top-k (k > TOPK_SMALL): p = 1, goal = k (exact counts). */
/* S for the threshold value v: the classes above it (their mass `cum`, short of the goal), then those
   at v in index order until the sum reaches the goal. */
static void select_at(const float *t, int64_t c, const double *p, goal_t goal, float v, double cum, uint8_t *mask) {
    for (int64_t i = 0; i < c; i++) mask[i] = t[i] > v;
    for (int64_t i0 = 0; i0 < c && !reaches(cum, goal); i0 += 16) { /* the classes at v, in index order */
        const int64_t end = i0 + 16 < c ? i0 + 16 : c;
        int any = 0; /* a block without v is passed over without a branch per class */
        for (int64_t i = i0; i < end; i++) any |= t[i] == v;
        for (int64_t i = i0; any && i < end && !reaches(cum, goal); i++)
            if (t[i] == v) {
                mask[i] = 1;
                cum += p[i];
            }
    }
}

static void threshold_select(const float *t, int64_t c, float tmin, float tmax, const double *p, goal_t goal,
                             uint8_t *mask, mass_probe_t probe) {
    if (!reaches(probe(t, p, c, tmin, 0), goal)) { /* P not reached (rounding, P near 1): every class */
        memset(mask, 1, (size_t)c);
        return;
    }
    uint32_t lo = float_key(tmin), hi = float_key(tmax); /* invariant: sum(t >= lo) reaches the goal */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (reaches(probe(t, p, c, key_float(mid), 0), goal))
            lo = mid;
        else
            hi = mid - 1;
    }
    const float v = key_float(lo);
    select_at(t, c, p, goal, v, probe(t, p, c, v, 1), mask); /* short of the goal: lo is the largest key */
}

/* ------------------------------------------------------------------------------------------------ */
/* Portable passes (plain C; double arithmetic, float scratch as in the AVX2 path).                  */

/* Pass 1 over classes [from, c), one at a time, on from the reductions given (the portable path: all of
   them; the SIMD passes: their last c % 8 or c % 16 classes, after the vector part's); then the row's values. */
static inline void pass1_scalar(const call_t *cl, scratch_t *sc, row_t *row, const char *tp, const char *sp,
                                int64_t from, float tm, float sm, float tn, float dm, int64_t targ, int64_t sarg,
                                int finite) {
    for (int64_t i = from; i < cl->c; i++) {
        float x = cl->t_dtype == DT_F16 ? half_to_float(((const uint16_t *)tp)[i]) : ((const float *)tp)[i];
        float y = cl->s_dtype == DT_F16 ? half_to_float(((const uint16_t *)sp)[i]) : ((const float *)sp)[i];
        finite &= isfinite(x) && isfinite(y);
        sc->tf[i] = x;
        sc->sf[i] = y;
        if (x > tm) tm = x, targ = i;
        if (y > sm) sm = y, sarg = i;
        tn = x < tn ? x : tn;
        dm = fabsf(x - y) > dm ? fabsf(x - y) : dm;
    }
    row->tmax = tm, row->smax = sm, row->tmin = tn, row->targ = targ, row->sarg = sarg, row->finite = finite;
    row->dx = dm;
}

static void pass3_portable(const call_t *cl, scratch_t *sc, row_t *row) {
    for (int g = 0; g < 2; g++) row->g[g].mt = -INFINITY, row->g[g].size = 0;
    for (int64_t i = 0; i < cl->c; i++) {
        group_t *g = &row->g[sc->mask[i] ? 0 : 1];
        g->size++;
        if (sc->tf[i] > g->mt) g->mt = sc->tf[i];
    }
}

static void pass4_portable(const call_t *cl, scratch_t *sc, row_t *row) {
    double zp[2] = {0, 0}, ds[2] = {0, 0};
    for (int64_t i = 0; i < cl->c; i++) {
        int g = sc->mask[i] ? 0 : 1;
        const group_t *G = &row->g[g];
        double t = sc->tf[i], s = sc->sf[i];
        double eb = exp((t - G->mt) * cl->inv_t);
        double d = (cl->standardize ? ls_d(cl, t, s) : (t - s) * cl->inv_t) - G->dref;
        sc->eb[i] = (float)eb;
        sc->dd[i] = (float)d;
        zp[g] += eb;
        ds[g] += eb * d;
    }
    for (int g = 0; g < 2; g++)
        row->g[g].zp = zp[g], row->g[g].dsum = ds[g];
}

static void pass5_portable(const call_t *cl, scratch_t *sc, row_t *row) {
    double f[2] = {0, 0}, amax = -INFINITY;
    const double shift[2] = {wide_shift(cl, row->g[0].mt), wide_shift(cl, row->g[1].mt)};
    for (int64_t i = 0; i < cl->c; i++) {
        int g = sc->mask[i] ? 0 : 1;
        const group_t *G = &row->g[g];
        if (G->size < 2) continue;
        double u = G->dbar_c - (double)sc->dd[i], eb = sc->eb[i];
        if (fabs(u) < PHI_POLY) {
            f[g] += eb * phi_d(u);
        } else {
            double arg = ((double)sc->sf[i] - shift[g]) * cl->inv_s + G->dbar; /* b + u */
            amax = arg > amax ? arg : amax;
            f[g] += exp(arg) - eb * (1.0 + u);
        }
    }
    row->g[0].f = f[0], row->g[1].f = f[1];
    row->g[0].arg_max = row->g[1].arg_max = amax;
}

/* LS: the row's statistics in double from the exact float inputs: the sums, then the centred squares
   (two passes: no cancellation), then max |d_i| (ls_d). The SIMD versions add in another order. */
static void ls_sums_scalar(const float *t, const float *s, int64_t c, double *st, double *ss) {
    double a = 0.0, b = 0.0;
    for (int64_t i = 0; i < c; i++) a += t[i], b += s[i];
    *st = a, *ss = b;
}

static void ls_squares_scalar(const float *t, const float *s, int64_t c, double mt, double ms, double *vt,
                              double *vs) {
    double a = 0.0, b = 0.0;
    for (int64_t i = 0; i < c; i++) {
        double x = t[i] - mt, y = s[i] - ms;
        a += x * x, b += y * y;
    }
    *vt = a, *vs = b;
}

static double ls_dmax_scalar(const call_t *cl, const float *t, const float *s, int64_t c) {
    double m = 0.0;
    for (int64_t i = 0; i < c; i++) {
        double d = fabs(ls_d(cl, t[i], s[i]));
        m = d > m ? d : m;
    }
    return m;
}

/* ------------------------------------------------------------------------------------------------ */
/* AVX2 + FMA + F16C passes.                                                                          */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(DK_PORTABLE_ONLY) /* -DDK_PORTABLE_ONLY: test builds */
#define DK_X86 1
#include <immintrin.h>
#define V_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) static inline
#define V_FN __attribute__((target("avx2,fma,f16c"))) static

/* phi(x) = x^2 (1/2 + x/6 + ... + x^5/7!) + O(x^8) in float, Horner from PHI_TOP. The truncation,
   relative to phi: 2e-10 at |x| = 1/8, 3e-9 at 0.2, 9e-8 at ln2/2 (the unified way's largest |r|). */
#define PHI_TOP (1.0f / 5040)
static const float PHI_C[5] = {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f};

/* e^x, 8 float lanes, x <= 88: Cody-Waite reduction x = n ln2 + r (ln2 in two parts), Cephes' expf
   polynomial on |r| <= ln2/2, 2^n in the exponent bits. Relative error ~1 ulp plus the argument's own
   rounding (6e-8 |x|). x below -87.3 gives 0 (a weight below 2^-125 next to a group sum >= 1). */
V_INLINE __m256 v_exp(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-100.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23);
    __m256 ok = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ni, _mm256_set1_epi32(-126)));
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(scale)), ok);
}

V_INLINE __m256 v_load(const char *row, int dtype, int64_t i) {
    if (dtype == DT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    return _mm256_loadu_ps((const float *)row + i);
}

V_INLINE float v_hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

V_INLINE double v_hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

V_INLINE __m256d v_lo(__m256 x) { return _mm256_cvtps_pd(_mm256_castps256_ps128(x)); }
V_INLINE __m256d v_hi(__m256 x) { return _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)); }

/* float lane mask -> the double-lane masks of its two halves */
V_INLINE __m256d v_mask_lo(__m256 m) {
    return _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_castps_si128(_mm256_castps256_ps128(m))));
}
V_INLINE __m256d v_mask_hi(__m256 m) {
    return _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_castps_si128(_mm256_extractf128_ps(m, 1))));
}

/* lane argmax: the smallest index among the lanes holding the maximum */
V_INLINE int64_t v_argmax(__m256 vmax, __m256i vidx, float m) {
    int bits = _mm256_movemask_ps(_mm256_cmp_ps(vmax, _mm256_set1_ps(m), _CMP_EQ_OQ));
    int32_t idx[8];
    _mm256_storeu_si256((__m256i *)idx, vidx);
    int64_t best = INT64_MAX;
    for (int l = 0; l < 8; l++)
        if ((bits >> l & 1) && idx[l] < best) best = idx[l];
    return best;
}

/* 8 mask bytes -> two lane masks (S, W) as floats; padding (2) is in neither */
V_INLINE void v_groups(const uint8_t *m, __m256 *is_s, __m256 *is_w) {
    __m256i g = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
    *is_s = _mm256_castsi256_ps(_mm256_cmpeq_epi32(g, _mm256_set1_epi32(1)));
    *is_w = _mm256_castsi256_ps(_mm256_cmpeq_epi32(g, _mm256_setzero_si256()));
}

V_FN void pass1_avx2(const call_t *cl, scratch_t *sc, int64_t r, row_t *row) {
    const char *tp = cl->t + r * cl->t_stride, *sp = cl->s + r * cl->s_stride;
    const int64_t c = cl->c, c8 = c & ~(int64_t)7;
    __m256 tmax = _mm256_set1_ps(-INFINITY), smax = tmax, tmin = _mm256_set1_ps(INFINITY), dx = _mm256_setzero_ps();
    __m256 nan_t = _mm256_setzero_ps(), nan_s = nan_t;
    __m256i tidx = _mm256_setzero_si256(), sidx = tidx;
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i eight = _mm256_set1_epi32(8);
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t i = 0; i < c8; i += 8) {
        __m256 t = v_load(tp, cl->t_dtype, i), s = v_load(sp, cl->s_dtype, i);
        _mm256_store_ps(sc->tf + i, t);
        _mm256_store_ps(sc->sf + i, s);
        tmin = _mm256_min_ps(tmin, t);
        dx = _mm256_max_ps(dx, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(t, s)));
        nan_t = _mm256_fmadd_ps(t, zero, nan_t); /* inf * 0 and NaN * 0 are NaN: finiteness for free */
        nan_s = _mm256_fmadd_ps(s, zero, nan_s);
        __m256 gt = _mm256_cmp_ps(t, tmax, _CMP_GT_OQ), gs = _mm256_cmp_ps(s, smax, _CMP_GT_OQ);
        tmax = _mm256_blendv_ps(tmax, t, gt);
        tidx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(tidx), _mm256_castsi256_ps(lane), gt));
        smax = _mm256_blendv_ps(smax, s, gs);
        sidx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(sidx), _mm256_castsi256_ps(lane), gs));
        lane = _mm256_add_epi32(lane, eight);
    }
    _mm256_storeu_ps(row->lanes, tmax);
    row->n_lanes = c8 > 0 ? 8 : 0;
    float tm = v_hmax(tmax), sm = v_hmax(smax), tn = -v_hmax(_mm256_sub_ps(_mm256_setzero_ps(), tmin)), dm = v_hmax(dx);
    int64_t targ = c8 ? v_argmax(tmax, tidx, tm) : 0, sarg = c8 ? v_argmax(smax, sidx, sm) : 0;
    int finite = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_add_ps(nan_t, nan_s), zero, _CMP_UNORD_Q)) == 0;
    pass1_scalar(cl, sc, row, tp, sp, c8, tm, sm, tn, dm, targ, sarg, finite); /* the last c % 8 classes */
}

/* A lower bound of the row's cap-th largest value: pass 1's lane maxima are the maxima of disjoint
   sets of classes, so the cap-th largest of them is <= the row's cap-th largest (cap <= lanes). Found
   by counting ranks, without branches (a sort of 16 random values mispredicts most of its swaps). */
static float lane_bound(const row_t *row, int64_t cap) {
    if (cap > row->n_lanes) return -INFINITY;
    float bound = -INFINITY;
    for (int j = 0; j < row->n_lanes; j++) {
        int rank = 0;
        for (int i = 0; i < row->n_lanes; i++)
            rank += (row->lanes[i] > row->lanes[j]) | ((row->lanes[i] == row->lanes[j]) & (i < j));
        bound = rank == cap - 1 ? row->lanes[j] : bound;
    }
    return bound;
}

/* Offer to the list only the classes that can enter it: those at or above the lane bound (a handful in
   a typical row) or, once the list is full, above its last value. 32 classes at a time are compared,
   and the few that pass are offered one by one. */
V_FN void topk_avx2(const float *t, int64_t c, const row_t *row, toplist_t *l) {
    float bound = lane_bound(row, l->cap);
    int64_t c32 = c & ~(int64_t)31, i = 0;
    __m256 tau = _mm256_set1_ps(bound);
    for (; i < c32; i += 32) {
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_load_ps(t + i), _mm256_load_ps(t + i + 8)),
                                 _mm256_max_ps(_mm256_load_ps(t + i + 16), _mm256_load_ps(t + i + 24)));
        if (!_mm256_movemask_ps(_mm256_cmp_ps(m, tau, _CMP_GE_OQ))) continue;
        for (int q = 0; q < 32; q += 8) {
            int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(t + i + q), tau, _CMP_GE_OQ));
            while (bits) {
                int j = __builtin_ctz((unsigned)bits);
                toplist_offer(l, t[i + q + j], i + q + j);
                bits &= bits - 1;
            }
        }
        if (l->filled == l->cap) tau = _mm256_set1_ps(l->val[l->cap - 1] > bound ? l->val[l->cap - 1] : bound);
    }
    for (; i < c; i++) toplist_offer(l, t[i], i);
}

V_FN void pass3_avx2(const call_t *cl, scratch_t *sc, row_t *row) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mts = ninf, mtw = ninf;
    __m256i count = _mm256_setzero_si256();
    for (int64_t i = 0; i < sc->cp; i += 8) {
        __m256 is_s, is_w, t = _mm256_load_ps(sc->tf + i);
        v_groups(sc->mask + i, &is_s, &is_w);
        mts = _mm256_max_ps(mts, _mm256_blendv_ps(ninf, t, is_s));
        mtw = _mm256_max_ps(mtw, _mm256_blendv_ps(ninf, t, is_w));
        count = _mm256_sub_epi32(count, _mm256_castps_si256(is_s));
    }
    int32_t cnt[8];
    _mm256_storeu_si256((__m256i *)cnt, count);
    int64_t size_s = 0;
    for (int l = 0; l < 8; l++) size_s += cnt[l];
    row->g[0].size = size_s, row->g[1].size = cl->c - size_s;
    row->g[0].mt = v_hmax(mts), row->g[1].mt = v_hmax(mtw);
}

/* the first class of group `want` (1 = S, 0 = W) whose teacher logit is `value` */
V_FN int64_t find_ref_avx2(const scratch_t *sc, uint8_t want, float value) {
    const __m256 v = _mm256_set1_ps(value);
    const __m256i w = _mm256_set1_epi32(want);
    for (int64_t i = 0; i < sc->cp; i += 8) {
        __m256i g = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sc->mask + i)));
        __m256 hit = _mm256_and_ps(_mm256_cmp_ps(_mm256_load_ps(sc->tf + i), v, _CMP_EQ_OQ),
                                   _mm256_castsi256_ps(_mm256_cmpeq_epi32(g, w)));
        int bits = _mm256_movemask_ps(hit);
        if (bits) return i + __builtin_ctz((unsigned)bits);
    }
    return 0; /* not reached: the group holds its maximum */
}

/* Pass 4, one vector of 8 classes with per-lane group constants: stores e^b and d - d_ref, returns
   e^b and d - d_ref as double halves for the sums. d - d_ref is taken in double from the exact float
   inputs (float_d = 0): the difference is formed before any rounding that could swamp it, so a
   student offset from the teacher by a constant still gets it to full relative precision. Where
   max |t - s| <= FLOAT_D_X T (float_d = 1) float suffices: (t - s) / T is then within 1 of 0 and its
   rounding is 1.2e-7 absolute at most. With LS (float_d = 2) d is ls_d's, in double. */
typedef struct {
    __m256d eblo, ebhi, dlo, dhi;
} p4_t;

typedef struct {
    __m256 mt, drf;
    __m256d drlo, drhi;
} p4c_t;

typedef struct { /* LS: the row's M_t - M_s, M_s and a_t - a_s (see ls_d) */
    __m256d dmean, mean_s, dinv;
} p4ls_t;

V_INLINE __m256d v_ls_d(__m256d t, __m256d s, __m256d inv_t, const p4ls_t *ls) {
    return _mm256_fmadd_pd(_mm256_sub_pd(_mm256_sub_pd(t, s), ls->dmean), inv_t,
                           _mm256_mul_pd(_mm256_sub_pd(s, ls->mean_s), ls->dinv));
}

V_INLINE p4_t p4_vector(scratch_t *sc, int64_t i, __m256 inv_tf, __m256d inv_t, p4c_t k, const int float_d,
                        const p4ls_t *ls) {
    p4_t o;
    __m256 t = _mm256_load_ps(sc->tf + i), s = _mm256_load_ps(sc->sf + i), d;
    __m256 eb = v_exp(_mm256_mul_ps(_mm256_sub_ps(t, k.mt), inv_tf));
    if (float_d == 1) {
        d = _mm256_sub_ps(_mm256_mul_ps(_mm256_sub_ps(t, s), inv_tf), k.drf);
        o.dlo = v_lo(d), o.dhi = v_hi(d);
    } else if (float_d == 2) {
        o.dlo = _mm256_sub_pd(v_ls_d(v_lo(t), v_lo(s), inv_t, ls), k.drlo);
        o.dhi = _mm256_sub_pd(v_ls_d(v_hi(t), v_hi(s), inv_t, ls), k.drhi);
        d = _mm256_set_m128(_mm256_cvtpd_ps(o.dhi), _mm256_cvtpd_ps(o.dlo));
    } else {
        o.dlo = _mm256_sub_pd(_mm256_mul_pd(_mm256_sub_pd(v_lo(t), v_lo(s)), inv_t), k.drlo);
        o.dhi = _mm256_sub_pd(_mm256_mul_pd(_mm256_sub_pd(v_hi(t), v_hi(s)), inv_t), k.drhi);
        d = _mm256_set_m128(_mm256_cvtpd_ps(o.dhi), _mm256_cvtpd_ps(o.dlo));
    }
    _mm256_store_ps(sc->eb + i, eb);
    _mm256_store_ps(sc->dd + i, d);
    o.eblo = v_lo(eb), o.ebhi = v_hi(eb);
    return o;
}

V_INLINE void pass4_body(const call_t *cl, scratch_t *sc, row_t *row, const int float_d) {
    const __m256d inv_t = _mm256_set1_pd(cl->inv_t);
    const __m256 inv_tf = _mm256_set1_ps((float)cl->inv_t);
    const p4ls_t ls = {_mm256_set1_pd(cl->dmean), _mm256_set1_pd(cl->mean_s), _mm256_set1_pd(cl->dinv)};
    const group_t *S = &row->g[0], *W = &row->g[1];
    const p4c_t ks = {_mm256_set1_ps(S->mt), _mm256_set1_ps(row->dref_f[0]), _mm256_set1_pd(S->dref), _mm256_set1_pd(S->dref)};
    const p4c_t kw = {_mm256_set1_ps(W->mt), _mm256_set1_ps(row->dref_f[1]), _mm256_set1_pd(W->dref), _mm256_set1_pd(W->dref)};
    __m256d zp_s = _mm256_setzero_pd(), ds_s = zp_s, zp_w = zp_s, ds_w = zp_s;
    const uint64_t all_s = 0x0101010101010101ull;
    for (int64_t i = 0; i < sc->cp; i += 8) {
        prefetch_line(row, 0, i / 8);
        uint64_t bits;
        memcpy(&bits, sc->mask + i, 8);
        if (bits == 0) { /* all in W (most vectors of a top-k row): no per-lane selects */
            p4_t o = p4_vector(sc, i, inv_tf, inv_t, kw, float_d, &ls);
            zp_w = _mm256_add_pd(zp_w, _mm256_add_pd(o.eblo, o.ebhi));
            ds_w = _mm256_fmadd_pd(o.ebhi, o.dhi, _mm256_fmadd_pd(o.eblo, o.dlo, ds_w));
        } else if (bits == all_s) {
            p4_t o = p4_vector(sc, i, inv_tf, inv_t, ks, float_d, &ls);
            zp_s = _mm256_add_pd(zp_s, _mm256_add_pd(o.eblo, o.ebhi));
            ds_s = _mm256_fmadd_pd(o.ebhi, o.dhi, _mm256_fmadd_pd(o.eblo, o.dlo, ds_s));
        } else {
            __m256 is_s, is_w;
            v_groups(sc->mask + i, &is_s, &is_w);
            __m256d slo = v_mask_lo(is_s), shi = v_mask_hi(is_s), wlo = v_mask_lo(is_w), whi = v_mask_hi(is_w);
            p4c_t km = {_mm256_blendv_ps(kw.mt, ks.mt, is_s), _mm256_blendv_ps(kw.drf, ks.drf, is_s),
                        _mm256_blendv_pd(kw.drlo, ks.drlo, slo), _mm256_blendv_pd(kw.drhi, ks.drhi, shi)};
            p4_t o = p4_vector(sc, i, inv_tf, inv_t, km, float_d, &ls);
            /* padding lanes (in neither group) hold finite values and are masked out of both sums */
            __m256d eb_slo = _mm256_and_pd(o.eblo, slo), eb_shi = _mm256_and_pd(o.ebhi, shi);
            __m256d eb_wlo = _mm256_and_pd(o.eblo, wlo), eb_whi = _mm256_and_pd(o.ebhi, whi);
            zp_s = _mm256_add_pd(zp_s, _mm256_add_pd(eb_slo, eb_shi));
            zp_w = _mm256_add_pd(zp_w, _mm256_add_pd(eb_wlo, eb_whi));
            ds_s = _mm256_fmadd_pd(eb_shi, o.dhi, _mm256_fmadd_pd(eb_slo, o.dlo, ds_s));
            ds_w = _mm256_fmadd_pd(eb_whi, o.dhi, _mm256_fmadd_pd(eb_wlo, o.dlo, ds_w));
        }
    }
    prefetch_rest(row, 0, sc->cp / 8);
    row->g[0].zp = v_hsum_pd(zp_s), row->g[0].dsum = v_hsum_pd(ds_s);
    row->g[1].zp = v_hsum_pd(zp_w), row->g[1].dsum = v_hsum_pd(ds_w);
}

/* body(args..., m) with the mode m one of a, b, c, passed as a constant: the always-inline body is compiled once
   for each mode, its branches on the mode resolved */
#define BY_MODE(body, m, a, b, c, ...) ((m) == (a) ? body(__VA_ARGS__, a) : (m) == (b) ? body(__VA_ARGS__, b) : body(__VA_ARGS__, c))

V_FN void pass4_avx2(const call_t *cl, scratch_t *sc, row_t *row, int float_d) { /* float_d: 0, 1, 2 (LS) */
    BY_MODE(pass4_body, float_d, 2, 1, 0, cl, sc, row);
}

/* Pass 5, one vector: e^b phi(u), u = dbar_c - (d - d_ref), with per-lane group constants (dbc: dbar_c
   in float; mt, dbar in double halves), in the row's way (mode; see the header). The way is chosen
   per row, not per vector: a per-vector test of |u| mispredicts wherever small and large |u| mix, and
   that cost more than the work it saved. The wide way reports its largest b + u in *amax. */
typedef struct {
    __m256 dbc;
    __m256d mtlo, mthi, dblo, dbhi;
} p5c_t;

/* x 2^n for x >= 0 normal or 0 and integral n, without intermediate overflow: n is added to x's
   exponent field; an exponent past the top gives inf, below the bottom 0 (AVX2 has no vscalefps). */
V_INLINE __m256 v_scalef(__m256 x, __m256 n) {
    n = _mm256_min_ps(_mm256_max_ps(n, _mm256_set1_ps(-300.0f)), _mm256_set1_ps(300.0f));
    __m256i ni = _mm256_cvtps_epi32(n), xb = _mm256_castps_si256(x);
    __m256i e = _mm256_srli_epi32(xb, 23), ne = _mm256_add_epi32(e, ni);
    __m256 r = _mm256_castsi256_ps(_mm256_add_epi32(xb, _mm256_slli_epi32(ni, 23)));
    r = _mm256_blendv_ps(r, _mm256_set1_ps(INFINITY), _mm256_castsi256_ps(_mm256_cmpgt_epi32(ne, _mm256_set1_epi32(254))));
    __m256i under = _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(1), ne), _mm256_cmpeq_epi32(e, _mm256_setzero_si256()));
    return _mm256_andnot_ps(_mm256_castsi256_ps(under), r);
}

V_INLINE __m256 p5_vector(const scratch_t *sc, int64_t i, __m256d inv_t, p5c_t k, __m256 *amax, const int mode) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 eb = _mm256_load_ps(sc->eb + i);
    __m256 u = _mm256_sub_ps(k.dbc, _mm256_load_ps(sc->dd + i));
    if (mode == P5_UNIFIED) { /* phi(u) from e^r, u = n ln2 + r: the series itself where n = 0 */
        __m256 n = _mm256_round_ps(_mm256_mul_ps(u, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), u);
        r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
        __m256 p = _mm256_set1_ps(PHI_TOP);
        for (int j = 0; j < 5; j++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PHI_C[j]));
        __m256 q = _mm256_mul_ps(_mm256_mul_ps(r, r), p); /* phi(r) = e^r - 1 - r */
        __m256 e = _mm256_fmadd_ps(eb, _mm256_add_ps(r, q), eb); /* as p5_body (AVX-512) */
        return _mm256_fmadd_ps(eb, _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147180559945f), q),
                               _mm256_sub_ps(v_scalef(e, n), e));
    }
    __m256 small = _mm256_cmp_ps(_mm256_andnot_ps(sign, u), _mm256_set1_ps(PHI_POLY), _CMP_LT_OQ);
    __m256 p = _mm256_set1_ps(PHI_TOP);
    for (int j = 0; j < 5; j++) p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(PHI_C[j]));
    __m256 term = _mm256_mul_ps(eb, _mm256_mul_ps(_mm256_mul_ps(u, u), p));
    if (mode == P5_WIDE) {
        __m256 s = _mm256_load_ps(sc->sf + i);
        __m256d alo = _mm256_fmadd_pd(_mm256_sub_pd(v_lo(s), k.mtlo), inv_t, k.dblo);
        __m256d ahi = _mm256_fmadd_pd(_mm256_sub_pd(v_hi(s), k.mthi), inv_t, k.dbhi);
        __m256 arg = _mm256_set_m128(_mm256_cvtpd_ps(ahi), _mm256_cvtpd_ps(alo));
        *amax = _mm256_max_ps(*amax, arg);
        __m256 big = _mm256_fnmadd_ps(eb, _mm256_add_ps(one, u), v_exp(arg));
        term = _mm256_blendv_ps(big, term, small);
    }
    return term;
}

/* per-group constants of pass 5; a group that skips it gets 0s: finite terms, ignored */
static void p5_constants(const call_t *cl, const row_t *row, float dbc[2], double mt[2], double dbar[2]) {
    for (int g = 0; g < 2; g++) { /* mt: the wide way's shift, b + u = (s - mt) inv_s + dbar */
        int on = row->g[g].size > 1;
        dbc[g] = on ? (float)row->g[g].dbar_c : 0.0f;
        mt[g] = on ? wide_shift(cl, row->g[g].mt) : 0.0;
        dbar[g] = on ? row->g[g].dbar : 0.0;
    }
}

V_INLINE void pass5_body(const call_t *cl, scratch_t *sc, row_t *row, const int mode) {
    float dbc[2];
    double mt[2], dbar[2];
    p5_constants(cl, row, dbc, mt, dbar);
    const __m256d inv_t = _mm256_set1_pd(cl->inv_s);
    p5c_t ks = {_mm256_set1_ps(dbc[0]), _mm256_set1_pd(mt[0]), _mm256_set1_pd(mt[0]), _mm256_set1_pd(dbar[0]),
                _mm256_set1_pd(dbar[0])};
    p5c_t kw = {_mm256_set1_ps(dbc[1]), _mm256_set1_pd(mt[1]), _mm256_set1_pd(mt[1]), _mm256_set1_pd(dbar[1]),
                _mm256_set1_pd(dbar[1])};
    __m256d f_s = _mm256_setzero_pd(), f_w = f_s;
    __m256 amax = _mm256_set1_ps(-INFINITY);
    const uint64_t all_s = 0x0101010101010101ull;
    for (int64_t i = 0; i < sc->cp; i += 8) {
        prefetch_line(row, 1, i / 8);
        uint64_t bits;
        memcpy(&bits, sc->mask + i, 8);
        if (bits == 0) {
            __m256 term = p5_vector(sc, i, inv_t, kw, &amax, mode);
            f_w = _mm256_add_pd(f_w, _mm256_add_pd(v_lo(term), v_hi(term)));
        } else if (bits == all_s) {
            __m256 term = p5_vector(sc, i, inv_t, ks, &amax, mode);
            f_s = _mm256_add_pd(f_s, _mm256_add_pd(v_lo(term), v_hi(term)));
        } else {
            __m256 is_s, is_w;
            v_groups(sc->mask + i, &is_s, &is_w);
            __m256d slo = v_mask_lo(is_s), shi = v_mask_hi(is_s);
            p5c_t km = {_mm256_blendv_ps(kw.dbc, ks.dbc, is_s), _mm256_blendv_pd(kw.mtlo, ks.mtlo, slo),
                        _mm256_blendv_pd(kw.mthi, ks.mthi, shi), _mm256_blendv_pd(kw.dblo, ks.dblo, slo),
                        _mm256_blendv_pd(kw.dbhi, ks.dbhi, shi)};
            __m256 term = p5_vector(sc, i, inv_t, km, &amax, mode);
            __m256 ts = _mm256_and_ps(term, is_s), tw = _mm256_and_ps(term, is_w);
            f_s = _mm256_add_pd(f_s, _mm256_add_pd(v_lo(ts), v_hi(ts)));
            f_w = _mm256_add_pd(f_w, _mm256_add_pd(v_lo(tw), v_hi(tw)));
        }
    }
    prefetch_rest(row, 1, sc->cp / 8);
    row->g[0].f = v_hsum_pd(f_s), row->g[1].f = v_hsum_pd(f_w);
    row->g[0].arg_max = row->g[1].arg_max = v_hmax(amax);
}

V_FN void pass5_avx2(const call_t *cl, scratch_t *sc, row_t *row, int mode) {
    BY_MODE(pass5_body, mode, P5_UNIFIED, P5_WIDE, P5_SERIES, cl, sc, row);
}


/* AVX-512 (F, BW, DQ, VL) versions of passes 1, 4 and 5 and of the top-k scan: the same arithmetic, 16
   lanes, group selects by mask registers (no separate branch for one-group vectors). */
#define W_INLINE __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c"), always_inline)) static inline
#define W_FN __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c"))) static

/* e^x = p 2^n as v_exp computes it: returns p = e^r, *n_out = n (unclamped, unscaled) */
W_INLINE __m512 w_exp_poly(__m512 x, __m512 *n_out) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    *n_out = n;
    return _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f)); /* e^r */
}
/* as w_exp for -87 <= x <= 88 only: no clamp, no flush (pass 4's common way: x >= -COMMON_SPAN) */
W_INLINE __m512 w_exp_inrange(__m512 x) {
    __m512 n, p = w_exp_poly(x, &n);
    return _mm512_scalef_ps(p, n);
}
W_INLINE __m512 w_exp(__m512 x) { /* as v_exp */
    __m512 n, p = w_exp_poly(_mm512_max_ps(x, _mm512_set1_ps(-100.0f)), &n);
    __mmask16 ok = _mm512_cmp_ps_mask(n, _mm512_set1_ps(-126.0f), _CMP_GT_OQ);
    return _mm512_maskz_scalef_ps(ok, p, n); /* p 2^n */
}

W_INLINE __m512d w_lo(__m512 x) { return _mm512_cvtps_pd(_mm512_castps512_ps256(x)); }
/* the lanes of the 16 elements from i on that lie below m (none from m on) */
W_INLINE __mmask16 tail16(int64_t m, int64_t i) {
    return m - i >= 16 ? (__mmask16)0xffff : m > i ? (__mmask16)((1u << (m - i)) - 1) : (__mmask16)0;
}
W_INLINE __m512d w_hi(__m512 x) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)); }
/* the sum of four accumulators (independent chains: the adds' latency, not their throughput, would bound one) */
W_INLINE double w_sum4(const __m512d a[4]) {
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a[0], a[1]), _mm512_add_pd(a[2], a[3])));
}

W_FN void pass1_avx512(const call_t *cl, scratch_t *sc, int64_t r, row_t *row) {
    const char *tp = cl->t + r * cl->t_stride, *sp = cl->s + r * cl->s_stride;
    const int64_t c = cl->c, c16 = c & ~(int64_t)15;
    __m512 tmax = _mm512_set1_ps(-INFINITY), smax = tmax, tmin = _mm512_set1_ps(INFINITY), dx = _mm512_setzero_ps();
    __m512i tidx = _mm512_setzero_si512(), sidx = tidx;
    __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i sixteen = _mm512_set1_epi32(16);
    __mmask16 bad = 0;
    for (int64_t i = 0; i < c16; i += 16) {
        __m512 t = cl->t_dtype == DT_F16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)tp + i)))
                                         : _mm512_loadu_ps((const float *)tp + i);
        __m512 s = cl->s_dtype == DT_F16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)sp + i)))
                                         : _mm512_loadu_ps((const float *)sp + i);
        _mm512_store_ps(sc->tf + i, t);
        _mm512_store_ps(sc->sf + i, s);
        __m512 diff = _mm512_sub_ps(t, s);
        bad |= _mm512_fpclass_ps_mask(t, 0x99) | _mm512_fpclass_ps_mask(s, 0x99); /* NaN or +-inf */
        __mmask16 gt = _mm512_cmp_ps_mask(t, tmax, _CMP_GT_OQ), gs = _mm512_cmp_ps_mask(s, smax, _CMP_GT_OQ);
        tmax = _mm512_mask_mov_ps(tmax, gt, t), tidx = _mm512_mask_mov_epi32(tidx, gt, lane);
        smax = _mm512_mask_mov_ps(smax, gs, s), sidx = _mm512_mask_mov_epi32(sidx, gs, lane);
        tmin = _mm512_min_ps(tmin, t);
        dx = _mm512_max_ps(dx, _mm512_abs_ps(diff));
        lane = _mm512_add_epi32(lane, sixteen);
    }
    _mm512_storeu_ps(row->lanes, tmax);
    row->n_lanes = c16 > 0 ? 16 : 0;
    float tm = _mm512_reduce_max_ps(tmax), sm = _mm512_reduce_max_ps(smax);
    float tn = _mm512_reduce_min_ps(tmin), dm = _mm512_reduce_max_ps(dx);
    int64_t targ = 0, sarg = 0;
    if (c16) { /* the smallest index among the lanes holding the maximum */
        __m512i big = _mm512_set1_epi32(INT32_MAX);
        targ = _mm512_reduce_min_epi32(_mm512_mask_mov_epi32(big, _mm512_cmp_ps_mask(tmax, _mm512_set1_ps(tm), _CMP_EQ_OQ), tidx));
        sarg = _mm512_reduce_min_epi32(_mm512_mask_mov_epi32(big, _mm512_cmp_ps_mask(smax, _mm512_set1_ps(sm), _CMP_EQ_OQ), sidx));
    }
    int finite = bad == 0;
    pass1_scalar(cl, sc, row, tp, sp, c16, tm, sm, tn, dm, targ, sarg, finite); /* the last c % 16 classes */
}

/* Pass 1 for a later student of a decompose_many call, on a row whose teacher the first student's pass 1
   read in full: the teacher's floats are in sc->tf and its maxima, minimum, argmax, lanes and finiteness in
   *row already (share_t), so only the student's logits are read (its maximum, argmax and finiteness) and
   max |t - s| taken against sc->tf. Every value is the one pass1_avx512 gives, bit for bit. */
W_FN void pass1_student_avx512(const call_t *cl, scratch_t *sc, int64_t r, row_t *row) {
    const char *sp = cl->s + r * cl->s_stride;
    const int64_t c = cl->c, c16 = c & ~(int64_t)15;
    __m512 smax = _mm512_set1_ps(-INFINITY), dx = _mm512_setzero_ps();
    __m512i sidx = _mm512_setzero_si512();
    __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i sixteen = _mm512_set1_epi32(16);
    __mmask16 bad = 0;
    for (int64_t i = 0; i < c16; i += 16) {
        __m512 s = cl->s_dtype == DT_F16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)sp + i)))
                                         : _mm512_loadu_ps((const float *)sp + i);
        _mm512_store_ps(sc->sf + i, s);
        bad |= _mm512_fpclass_ps_mask(s, 0x99); /* NaN or +-inf */
        __mmask16 gs = _mm512_cmp_ps_mask(s, smax, _CMP_GT_OQ);
        smax = _mm512_mask_mov_ps(smax, gs, s), sidx = _mm512_mask_mov_epi32(sidx, gs, lane);
        dx = _mm512_max_ps(dx, _mm512_abs_ps(_mm512_sub_ps(_mm512_load_ps(sc->tf + i), s)));
        lane = _mm512_add_epi32(lane, sixteen);
    }
    float sm = _mm512_reduce_max_ps(smax), dm = _mm512_reduce_max_ps(dx);
    int64_t sarg = 0;
    if (c16) {
        __m512i big = _mm512_set1_epi32(INT32_MAX);
        sarg = _mm512_reduce_min_epi32(_mm512_mask_mov_epi32(big, _mm512_cmp_ps_mask(smax, _mm512_set1_ps(sm), _CMP_EQ_OQ), sidx));
    }
    int finite = bad == 0;
    for (int64_t i = c16; i < c; i++) {
        float x = sc->tf[i], y = cl->s_dtype == DT_F16 ? _cvtsh_ss(((const uint16_t *)sp)[i]) : ((const float *)sp)[i];
        finite &= isfinite(y);
        sc->sf[i] = y;
        if (y > sm) sm = y, sarg = i;
        dm = fabsf(x - y) > dm ? fabsf(x - y) : dm;
    }
    row->smax = sm, row->sarg = sarg, row->finite = finite, row->dx = dm;
}

/* Top-k without data-dependent branches (they mispredicted, ~1000 cycles a row): the classes at or
   above the lane bound are compressed into a candidate list (in class order), a handful in a typical
   row; with at most 16 of them each candidate's rank in (value desc, index asc) order is counted with
   two vector compares, and the first `cap` ranks are the list. More candidates (a weak bound: few
   lanes, many ties) go through the insertion list. */
W_FN void topk_avx512(const float *t, int64_t c, const row_t *row, toplist_t *l, float *cv, int32_t *ci) {
    const float bound = lane_bound(row, l->cap);
    const __m512 b = _mm512_set1_ps(bound);
    const int64_t c16 = c & ~(int64_t)15;
    __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int64_t m = 0;
    for (int64_t base = 0; base < c16; base += 1024) { /* 64 vectors at a time */
        /* the compares first, with a bitmap of the vectors that hold candidates (a handful), so that
           the serial part (the candidate count feeds the next store's address) runs only for those */
        __mmask16 km[64];
        uint64_t any = 0;
        const int64_t nv = (c16 - base) / 16 < 64 ? (c16 - base) / 16 : 64;
        for (int64_t j = 0; j < nv; j++) {
            km[j] = _mm512_cmp_ps_mask(_mm512_load_ps(t + base + 16 * j), b, _CMP_GE_OQ);
            any |= (uint64_t)(km[j] != 0) << j;
        }
        while (any) {
            int64_t j = __builtin_ctzll(any), i = base + 16 * j;
            any &= any - 1;
            /* compress to a register, then a plain store: Zen 4's compress-to-memory is microcoded */
            _mm512_storeu_ps(cv + m, _mm512_maskz_compress_ps(km[j], _mm512_load_ps(t + i)));
            _mm512_storeu_si512(ci + m, _mm512_maskz_compress_epi32(km[j], _mm512_add_epi32(lane, _mm512_set1_epi32((int)i))));
            m += __builtin_popcount(km[j]);
        }
    }
    for (int64_t i = c16; i < c; i++)
        if (t[i] >= bound) cv[m] = t[i], ci[m++] = (int32_t)i;
    if (m > 16) {
        l->filled = 0;
        for (int64_t j = 0; j < m; j++) toplist_offer(l, cv[j], ci[j]);
        return;
    }
    __m512 all = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << m) - 1), cv);
    for (int64_t j = 0; j < m; j++) {
        __m512 x = _mm512_set1_ps(cv[j]);
        unsigned before = _mm512_cmp_ps_mask(all, x, _CMP_GT_OQ) |
                          (_mm512_cmp_ps_mask(all, x, _CMP_EQ_OQ) & ((1u << j) - 1));
        int64_t rank = __builtin_popcount(before), slot = rank < l->cap ? rank : l->cap;
        l->val[slot] = cv[j], l->idx[slot] = ci[j];
    }
    l->filled = m < l->cap ? m : l->cap;
}

/* Pass 4 and 5 bodies for 16 classes at i, accumulating into *a. The loops run two bodies per
   iteration with separate accumulators. The sums go into float lanes for FLUSH iterations (4 terms
   per lane), then into double: the float partials cost ~2e-7 of relative accuracy (of the sum of
   |terms|) and save the double conversions of every vector. (Summing e^b (d - d_ref), which feeds BCD
   at first order, in double throughout was measured: 5% slower, and BCD's worst error in the
   adversarial test went from 2.9e-4 only to 2.2e-4: the float terms dominate there.) */
#define FLUSH 4 /* loop iterations (two bodies each) between flushes of the float partial sums */

typedef struct {
    __m512 zs, zw, ds, dw;     /* float partials: sum e^b and sum e^b (d - d_ref), S and W */
    __m512d zs2, zw2, ds2, dw2; /* double totals */
} acc4_t;

W_INLINE void acc4_flush(acc4_t *a) {
    a->zs2 = _mm512_add_pd(a->zs2, _mm512_add_pd(w_lo(a->zs), w_hi(a->zs)));
    a->zw2 = _mm512_add_pd(a->zw2, _mm512_add_pd(w_lo(a->zw), w_hi(a->zw)));
    a->ds2 = _mm512_add_pd(a->ds2, _mm512_add_pd(w_lo(a->ds), w_hi(a->ds)));
    a->dw2 = _mm512_add_pd(a->dw2, _mm512_add_pd(w_lo(a->dw), w_hi(a->dw)));
    a->zs = a->zw = a->ds = a->dw = _mm512_setzero_ps();
}

typedef struct {
    __m512 inv_tf, mt_s, mt_w, drf_s, drf_w;
    __m512d inv_t, dr_s, dr_w;
    __m512d dmean, mean_s, dinv; /* LS (P4_SCALED): see ls_d */
} k4_t;

W_INLINE __m512d w_ls_d(__m512d t, __m512d s, const k4_t *k) { /* as ls_d */
    return _mm512_fmadd_pd(_mm512_sub_pd(_mm512_sub_pd(t, s), k->dmean), k->inv_t,
                           _mm512_mul_pd(_mm512_sub_pd(s, k->mean_s), k->dinv));
}

/* reuse: e^b is already in sc->eb, from this row's pass 4 for another student of the same call, of the
   same kind (one shift for both groups, or each group's own), or of the common kind from mass:P's selection
   (mass_expf_avx512): it depends on the teacher only. */
W_INLINE void p4_body(scratch_t *sc, int64_t i, const k4_t *k, acc4_t *a, const int mode, const int reuse) {
    __m128i m = _mm_loadu_si128((const __m128i *)(sc->mask + i));
    __mmask16 ks = _mm_cmpeq_epi8_mask(m, _mm_set1_epi8(1)), kw = _mm_cmpeq_epi8_mask(m, _mm_setzero_si128());
    __mmask8 ks0 = (__mmask8)ks, ks1 = (__mmask8)(ks >> 8);
    __m512 t = _mm512_load_ps(sc->tf + i), s = _mm512_load_ps(sc->sf + i), d, eb;
    if (reuse)
        eb = _mm512_load_ps(sc->eb + i);
    else if (mode == P4_COMMON) /* one shift and one reference for both groups (see the header) */
        eb = w_exp_inrange(_mm512_fmsub_ps(t, k->inv_tf, k->mt_s));
    else /* P4_FLOAT, P4_DOUBLE and P4_SCALED: each group's own shift */
        eb = w_exp(_mm512_mul_ps(_mm512_sub_ps(t, _mm512_mask_blend_ps(ks, k->mt_w, k->mt_s)), k->inv_tf));
    if (mode == P4_COMMON) {
        d = _mm512_fmsub_ps(_mm512_sub_ps(t, s), k->inv_tf, k->drf_s);
    } else if (mode == P4_FLOAT) { /* see p4_vector */
        d = _mm512_sub_ps(_mm512_mul_ps(_mm512_sub_ps(t, s), k->inv_tf), _mm512_mask_blend_ps(ks, k->drf_w, k->drf_s));
    } else if (mode == P4_SCALED) { /* LS: d in double, ls_d */
        __m512d dlo = _mm512_sub_pd(w_ls_d(w_lo(t), w_lo(s), k), _mm512_mask_blend_pd(ks0, k->dr_w, k->dr_s));
        __m512d dhi = _mm512_sub_pd(w_ls_d(w_hi(t), w_hi(s), k), _mm512_mask_blend_pd(ks1, k->dr_w, k->dr_s));
        d = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(dlo)), _mm512_cvtpd_ps(dhi), 1);
    } else {
        __m512d dlo = _mm512_sub_pd(_mm512_mul_pd(_mm512_sub_pd(w_lo(t), w_lo(s)), k->inv_t), _mm512_mask_blend_pd(ks0, k->dr_w, k->dr_s));
        __m512d dhi = _mm512_sub_pd(_mm512_mul_pd(_mm512_sub_pd(w_hi(t), w_hi(s)), k->inv_t), _mm512_mask_blend_pd(ks1, k->dr_w, k->dr_s));
        d = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(dlo)), _mm512_cvtpd_ps(dhi), 1);
    }
    if (!reuse) _mm512_store_ps(sc->eb + i, eb);
    _mm512_store_ps(sc->dd + i, d);
    a->zs = _mm512_mask_add_ps(a->zs, ks, a->zs, eb), a->zw = _mm512_mask_add_ps(a->zw, kw, a->zw, eb);
    a->ds = _mm512_mask3_fmadd_ps(eb, d, a->ds, ks), a->dw = _mm512_mask3_fmadd_ps(eb, d, a->dw, kw);
}

W_INLINE void pass4_512_body(const call_t *cl, scratch_t *sc, row_t *row, const int mode, const int reuse) {
    const group_t *S = &row->g[0], *W = &row->g[1];
    /* P4_COMMON: mt_s holds max t / T (the shift, pre-scaled for the fused multiply-subtract) */
    const float shift = mode == P4_COMMON ? (float)((double)S->mt * cl->inv_t) : S->mt;
    const k4_t k = {_mm512_set1_ps((float)cl->inv_t), _mm512_set1_ps(shift), _mm512_set1_ps(W->mt),
                    _mm512_set1_ps(row->dref_f[0]), _mm512_set1_ps(row->dref_f[1]), _mm512_set1_pd(cl->inv_t),
                    _mm512_set1_pd(S->dref), _mm512_set1_pd(W->dref), _mm512_set1_pd(cl->dmean),
                    _mm512_set1_pd(cl->mean_s), _mm512_set1_pd(cl->dinv)};
    const __m512 z = _mm512_setzero_ps();
    const __m512d z2 = _mm512_setzero_pd();
    acc4_t a = {z, z, z, z, z2, z2, z2, z2}, b = a;
    int64_t i = 0;
    for (int it = 1; i + 32 <= sc->cp; i += 32, it++) {
        prefetch_line(row, 0, i / 16), prefetch_line(row, 0, i / 16 + 1);
        p4_body(sc, i, &k, &a, mode, reuse);
        p4_body(sc, i + 16, &k, &b, mode, reuse);
        if (it % FLUSH == 0) acc4_flush(&a), acc4_flush(&b);
    }
    if (i < sc->cp) {
        prefetch_line(row, 0, i / 16);
        p4_body(sc, i, &k, &a, mode, reuse);
        i += 16;
    }
    acc4_flush(&a), acc4_flush(&b);
    prefetch_rest(row, 0, i / 16);
    row->g[0].zp = _mm512_reduce_add_pd(_mm512_add_pd(a.zs2, b.zs2));
    row->g[1].zp = _mm512_reduce_add_pd(_mm512_add_pd(a.zw2, b.zw2));
    row->g[0].dsum = _mm512_reduce_add_pd(_mm512_add_pd(a.ds2, b.ds2));
    row->g[1].dsum = _mm512_reduce_add_pd(_mm512_add_pd(a.dw2, b.dw2));
}

W_FN void pass4_avx512(const call_t *cl, scratch_t *sc, row_t *row, int mode, int reuse) {
    if (mode == P4_COMMON)
        reuse ? pass4_512_body(cl, sc, row, P4_COMMON, 1) : pass4_512_body(cl, sc, row, P4_COMMON, 0);
    else if (mode == P4_FLOAT)
        reuse ? pass4_512_body(cl, sc, row, P4_FLOAT, 1) : pass4_512_body(cl, sc, row, P4_FLOAT, 0);
    else if (mode == P4_SCALED)
        reuse ? pass4_512_body(cl, sc, row, P4_SCALED, 1) : pass4_512_body(cl, sc, row, P4_SCALED, 0);
    else
        reuse ? pass4_512_body(cl, sc, row, P4_DOUBLE, 1) : pass4_512_body(cl, sc, row, P4_DOUBLE, 0);
}

typedef struct {
    __m512 fs, fw;      /* float partials of F, S and W (every term >= 0) */
    __m512d fs2, fw2;   /* double totals */
    __m512 amax;
} acc5_t;

W_INLINE void acc5_flush(acc5_t *a) {
    a->fs2 = _mm512_add_pd(a->fs2, _mm512_add_pd(w_lo(a->fs), w_hi(a->fs)));
    a->fw2 = _mm512_add_pd(a->fw2, _mm512_add_pd(w_lo(a->fw), w_hi(a->fw)));
    a->fs = a->fw = _mm512_setzero_ps();
}

typedef struct {
    __m512 db_s, db_w;
    __m512d inv_t, mt_s, mt_w, dbar_s, dbar_w;
} k5_t;

W_INLINE void p5_body(const scratch_t *sc, int64_t i, const k5_t *k, acc5_t *a, const int mode) {
    __m128i m = _mm_loadu_si128((const __m128i *)(sc->mask + i));
    __mmask16 ks = _mm_cmpeq_epi8_mask(m, _mm_set1_epi8(1)), kw = _mm_cmpeq_epi8_mask(m, _mm_setzero_si128());
    __m512 eb = _mm512_load_ps(sc->eb + i);
    __m512 u = _mm512_sub_ps(_mm512_mask_blend_ps(ks, k->db_w, k->db_s), _mm512_load_ps(sc->dd + i));
    __m512 term;
    if (mode == P5_UNIFIED) { /* phi(u) from e^r, u = n ln2 + r: the series itself where n = 0 */
        __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(u, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), u);
        r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
        __m512 p = _mm512_set1_ps(PHI_TOP);
        for (int j = 0; j < 5; j++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PHI_C[j]));
        __m512 q = _mm512_mul_ps(_mm512_mul_ps(r, r), p); /* phi(r) = e^r - 1 - r */
        /* e^b phi(u) = e^b (2^n e^r - 1 - u) = (scalef(E, n) - E) + e^b (q - n ln2), E = e^b e^r: exactly
           e^b q where n = 0 (no cancellation, no select), and scalef scales without overflowing early */
        __m512 e = _mm512_fmadd_ps(eb, _mm512_add_ps(r, q), eb);
        term = _mm512_fmadd_ps(eb, _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147180559945f), q),
                               _mm512_sub_ps(_mm512_scalef_ps(e, n), e));
    } else {
        __m512 p = _mm512_set1_ps(PHI_TOP);
        for (int j = 0; j < 5; j++) p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(PHI_C[j]));
        term = _mm512_mul_ps(eb, _mm512_mul_ps(_mm512_mul_ps(u, u), p));
    }
    if (mode == P5_WIDE) {
        __m512 s = _mm512_load_ps(sc->sf + i);
        __mmask8 ks0 = (__mmask8)ks, ks1 = (__mmask8)(ks >> 8);
        __m512d alo = _mm512_fmadd_pd(_mm512_sub_pd(w_lo(s), _mm512_mask_blend_pd(ks0, k->mt_w, k->mt_s)), k->inv_t,
                                      _mm512_mask_blend_pd(ks0, k->dbar_w, k->dbar_s));
        __m512d ahi = _mm512_fmadd_pd(_mm512_sub_pd(w_hi(s), _mm512_mask_blend_pd(ks1, k->mt_w, k->mt_s)), k->inv_t,
                                      _mm512_mask_blend_pd(ks1, k->dbar_w, k->dbar_s));
        __m512 arg = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(alo)), _mm512_cvtpd_ps(ahi), 1);
        a->amax = _mm512_max_ps(a->amax, arg);
        __m512 big = _mm512_fnmadd_ps(eb, _mm512_add_ps(_mm512_set1_ps(1.0f), u), w_exp(arg));
        __mmask16 large = _mm512_cmp_ps_mask(_mm512_abs_ps(u), _mm512_set1_ps(PHI_POLY), _CMP_GE_OQ);
        term = _mm512_mask_blend_ps(large, term, big);
    }
    a->fs = _mm512_mask_add_ps(a->fs, ks, a->fs, term), a->fw = _mm512_mask_add_ps(a->fw, kw, a->fw, term);
}

W_INLINE void pass5_512_body(const call_t *cl, scratch_t *sc, row_t *row, const int mode) {
    float dbc[2];
    double mt[2], dbar[2];
    p5_constants(cl, row, dbc, mt, dbar);
    const k5_t k = {_mm512_set1_ps(dbc[0]), _mm512_set1_ps(dbc[1]), _mm512_set1_pd(cl->inv_s), _mm512_set1_pd(mt[0]),
                    _mm512_set1_pd(mt[1]), _mm512_set1_pd(dbar[0]), _mm512_set1_pd(dbar[1])};
    acc5_t a = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                _mm512_set1_ps(-INFINITY)}, b = a;
    int64_t i = 0;
    for (int it = 1; i + 32 <= sc->cp; i += 32, it++) {
        prefetch_line(row, 1, i / 16), prefetch_line(row, 1, i / 16 + 1);
        p5_body(sc, i, &k, &a, mode);
        p5_body(sc, i + 16, &k, &b, mode);
        if (it % FLUSH == 0) acc5_flush(&a), acc5_flush(&b);
    }
    if (i < sc->cp) {
        prefetch_line(row, 1, i / 16);
        p5_body(sc, i, &k, &a, mode);
        i += 16;
    }
    acc5_flush(&a), acc5_flush(&b);
    prefetch_rest(row, 1, i / 16);
    row->g[0].f = _mm512_reduce_add_pd(_mm512_add_pd(a.fs2, b.fs2));
    row->g[1].f = _mm512_reduce_add_pd(_mm512_add_pd(a.fw2, b.fw2));
    row->g[0].arg_max = row->g[1].arg_max = _mm512_reduce_max_ps(_mm512_max_ps(a.amax, b.amax));
}

W_FN void pass5_avx512(const call_t *cl, scratch_t *sc, row_t *row, int mode) {
    BY_MODE(pass5_512_body, mode, P5_UNIFIED, P5_WIDE, P5_SERIES, cl, sc, row);
}

/* e^x in double, 8 lanes, x <= 0: x = n ln2 + r (ln2 in two parts), Taylor to r^13 on |r| <= ln2/2
   (truncation 4e-18), scalef for 2^n (0 below the double range). ~1 ulp: mass:P's float64 decision. */
W_INLINE __m512d w_exp_pd(__m512d x) {
    x = _mm512_max_pd(x, _mm512_set1_pd(-746.0));
    __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93147180369123816490e-1), x);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.90821492927058770002e-10), r);
    __m512d q = _mm512_set1_pd(1.0 / 6227020800.0); /* 1/13! */
    static const double inv_fact[13] = {1.0 / 479001600, 1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320,
                                        1.0 / 5040,      1.0 / 720,      1.0 / 120,     1.0 / 24,     1.0 / 6,
                                        0.5,             1.0,            1.0};
    for (int j = 0; j < 13; j++) q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(inv_fact[j]));
    return _mm512_scalef_pd(q, n);
}

W_FN double mass_exp_avx512(const float *t, int64_t c, float tmax, double inv_t, double *p) {
    const int64_t c16 = c & ~(int64_t)15;
    const __m512d mx = _mm512_set1_pd(tmax), it = _mm512_set1_pd(inv_t);
    __m512d z = _mm512_setzero_pd();
    for (int64_t i = 0; i < c16; i += 16) {
        __m512 v = _mm512_load_ps(t + i);
        __m512d a = w_exp_pd(_mm512_mul_pd(_mm512_sub_pd(w_lo(v), mx), it));
        __m512d b = w_exp_pd(_mm512_mul_pd(_mm512_sub_pd(w_hi(v), mx), it));
        _mm512_storeu_pd(p + i, a);
        _mm512_storeu_pd(p + i + 8, b);
        z = _mm512_add_pd(z, _mm512_add_pd(a, b));
    }
    return _mm512_reduce_add_pd(z) + mass_exp_scalar(t + c16, c - c16, tmax, inv_t, p + c16);
}

W_FN double mass_probe_avx512(const float *t, const double *p, int64_t c, float theta, int strict) {
    const int64_t c16 = c & ~(int64_t)15;
    const __m512 th = _mm512_set1_ps(theta);
    __m512d a = _mm512_setzero_pd(), b = a;
    for (int64_t i = 0; i < c16; i += 16) {
        __m512 v = _mm512_load_ps(t + i);
        __mmask16 k = strict ? _mm512_cmp_ps_mask(v, th, _CMP_GT_OQ) : _mm512_cmp_ps_mask(v, th, _CMP_GE_OQ);
        a = _mm512_mask_add_pd(a, (__mmask8)k, a, _mm512_loadu_pd(p + i));
        b = _mm512_mask_add_pd(b, (__mmask8)(k >> 8), b, _mm512_loadu_pd(p + i + 8));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(a, b)) + mass_probe_scalar(t + c16, p + c16, c - c16, theta, strict);
}

/* mass:P's threshold v by sampled bands. A band is the candidates whose values lie in [lo, hi], chosen from
   BAND_SAMPLES candidates taken at even strides (in class order, so of any rank): in ascending (value, sample)
   order, their masses cumulated from the bottom estimate the share of the candidates' mass below each sample's
   value, and the band runs BAND_HALF samples either side of where that estimate reaches the share that lies
   below v. One pass sums the mass above the band and in it and compacts the band's candidates (for the row
   itself, mass_expf_avx512's pass does so while it computes p~); v lies in the band where those sums say so
   (exactly: the masses, not the estimate, decide), and the band is then the candidates of the next step. */
#define BAND_SAMPLES 32 /* two vectors: the ranks below take them so */
#define BAND_HALF 3
typedef struct {
    float lo, hi;
} band_t;

/* the band from the samples' values xs and masses xp (float: an estimate), where their masses below v add up
   to `need`: in ascending order, the first sample whose mass, with that of those before it, reaches it, k,
   and the band [value of rank k - BAND_HALF, value of rank k + BAND_HALF] (open where the rank is out of
   range). Each sample's rank and the mass before it, vectorised over the samples, from distinct keys: the
   values' monotone bits with the sample's number in the lowest five (the order of values that differ there
   only may change: an estimate still; a band is a band). */
W_INLINE band_t band_of(const float *xs, const float *xp, float need) {
    const __m512i top = _mm512_set1_epi32((int)0x80000000), low = _mm512_set1_epi32(~(BAND_SAMPLES - 1));
    const __m512 x0 = _mm512_loadu_ps(xs), x1 = _mm512_loadu_ps(xs + 16);
    __m512i k0 = _mm512_castps_si512(x0), k1 = _mm512_castps_si512(x1); /* float_key, 16 at a time */
    k0 = _mm512_xor_si512(k0, _mm512_or_si512(_mm512_srai_epi32(k0, 31), top));
    k1 = _mm512_xor_si512(k1, _mm512_or_si512(_mm512_srai_epi32(k1, 31), top));
    k0 = _mm512_or_si512(_mm512_and_si512(k0, low), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    k1 = _mm512_or_si512(_mm512_and_si512(k1, low), _mm512_setr_epi32(16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31));
    uint32_t keys[BAND_SAMPLES];
    _mm512_storeu_si512(keys, k0), _mm512_storeu_si512(keys + 16, k1);
    const __m512i one = _mm512_set1_epi32(1);
    __m512 b[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m512i r0 = _mm512_setzero_si512(), r1 = r0;
    for (int i = 0; i < BAND_SAMPLES; i++) { /* sample i comes before the samples j with key_j > key_i */
        const __m512i k = _mm512_set1_epi32((int)keys[i]);
        const __m512 p = _mm512_set1_ps(xp[i]);
        const __mmask16 a0 = _mm512_cmpgt_epu32_mask(k0, k), a1 = _mm512_cmpgt_epu32_mask(k1, k);
        const int c2 = 2 * (i & 1); /* two chains per half */
        b[c2] = _mm512_mask_add_ps(b[c2], a0, b[c2], p), b[c2 + 1] = _mm512_mask_add_ps(b[c2 + 1], a1, b[c2 + 1], p);
        r0 = _mm512_mask_add_epi32(r0, a0, r0, one), r1 = _mm512_mask_add_epi32(r1, a1, r1, one);
    }
    const __m512 n = _mm512_set1_ps(need);
    const __mmask16 c0 = _mm512_cmp_ps_mask(_mm512_add_ps(_mm512_add_ps(b[0], b[2]), _mm512_loadu_ps(xp)), n, _CMP_GE_OQ);
    const __mmask16 c1 = _mm512_cmp_ps_mask(_mm512_add_ps(_mm512_add_ps(b[1], b[3]), _mm512_loadu_ps(xp + 16)), n, _CMP_GE_OQ);
    const __m512i last = _mm512_set1_epi32(BAND_SAMPLES - 1);
    const int k = _mm512_reduce_min_epi32(_mm512_min_epi32(_mm512_mask_mov_epi32(last, c0, r0), _mm512_mask_mov_epi32(last, c1, r1)));
    band_t band = {-INFINITY, INFINITY};
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    if (k >= BAND_HALF) {
        const __m512i at = _mm512_set1_epi32(k - BAND_HALF);
        band.lo = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_mask_mov_ps(ninf, _mm512_cmpeq_epi32_mask(r0, at), x0),
                                                     _mm512_mask_mov_ps(ninf, _mm512_cmpeq_epi32_mask(r1, at), x1)));
    }
    if (k + BAND_HALF < BAND_SAMPLES) {
        const __m512i at = _mm512_set1_epi32(k + BAND_HALF);
        band.hi = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_mask_mov_ps(ninf, _mm512_cmpeq_epi32_mask(r0, at), x0),
                                                     _mm512_mask_mov_ps(ninf, _mm512_cmpeq_epi32_mask(r1, at), x1)));
    }
    return band;
}

/* the classes of m candidates (m >= BAND_SAMPLES) sampled at even strides */
W_INLINE void band_index(int64_t m, __m512i *i0, __m512i *i1) {
    int32_t idx[BAND_SAMPLES];
    for (int j = 0; j < BAND_SAMPLES; j++) idx[j] = (int32_t)(((uint64_t)j * (uint64_t)m) / BAND_SAMPLES + (uint64_t)m / (2 * BAND_SAMPLES));
    *i0 = _mm512_loadu_si512(idx), *i1 = _mm512_loadu_si512(idx + 16);
}

/* the samples' values and masses */
W_INLINE void band_samples(const float *vals, const float *ps, int64_t m, float *xs, float *xp) {
    __m512i i0, i1;
    band_index(m, &i0, &i1);
    _mm512_storeu_ps(xs, _mm512_i32gather_ps(i0, vals, 4)), _mm512_storeu_ps(xs + 16, _mm512_i32gather_ps(i1, vals, 4));
    _mm512_storeu_ps(xp, _mm512_i32gather_ps(i0, ps, 4)), _mm512_storeu_ps(xp + 16, _mm512_i32gather_ps(i1, ps, 4));
}

/* one band pass over m candidates: the mass above the band into *up, in it into *in_band, its candidates
   compacted into cv, cp (another buffer: where v is not in the band, the candidates are needed whole);
   returns their number */
W_INLINE int64_t band_pass(const float *vals, const float *ps, int64_t m, band_t b, float *cv, float *cp, double *up,
                           double *in_band) {
    const __m512 lo = _mm512_set1_ps(b.lo), hi = _mm512_set1_ps(b.hi);
    __m512d u[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()}, w[2] = {u[0], u[1]};
    int64_t n = 0;
    for (int64_t i = 0; i < m; i += 16) {
        const __mmask16 in = tail16(m, i);
        const __m512 y = _mm512_maskz_loadu_ps(in, vals + i), pv = _mm512_maskz_loadu_ps(in, ps + i);
        const __mmask16 gt = _mm512_mask_cmp_ps_mask(in, y, hi, _CMP_GT_OQ);
        const __mmask16 bd = _mm512_mask_cmp_ps_mask(in, y, lo, _CMP_GE_OQ) & ~gt;
        const __m512d pa = w_lo(pv), pb = w_hi(pv);
        u[0] = _mm512_mask_add_pd(u[0], (__mmask8)gt, u[0], pa);
        u[1] = _mm512_mask_add_pd(u[1], (__mmask8)(gt >> 8), u[1], pb);
        w[0] = _mm512_mask_add_pd(w[0], (__mmask8)bd, w[0], pa);
        w[1] = _mm512_mask_add_pd(w[1], (__mmask8)(bd >> 8), w[1], pb);
        _mm512_storeu_ps(cv + n, _mm512_maskz_compress_ps(bd, y));
        _mm512_storeu_ps(cp + n, _mm512_maskz_compress_ps(bd, pv));
        n += __builtin_popcount(bd);
    }
    *up = _mm512_reduce_add_pd(_mm512_add_pd(u[0], u[1]));
    *in_band = _mm512_reduce_add_pd(_mm512_add_pd(w[0], w[1]));
    return n;
}

/* v among m <= RANK_MAX candidates (all the classes at v among them) with `base` the mass above them: each
   candidate's mass at or above its value (in float: an estimate), and v the largest value where base and it
   reach the goal; then the mass strictly above v and the classes at it, in double. Reports as mass_pick_avx512
   does (a v the estimate got wrong, in a row within float's rounding of the goal, fails the certification). */
#define RANK_MAX 48 /* three vectors */
W_INLINE int mass_rank(const float *vals, const float *ps, int64_t m, double base, goal_t goal, float *v,
                       double *above_v, int64_t *ties, float *p_at) {
    __m512 x[3], g[3];
    __mmask16 in[3];
    for (int q = 0; q < 3; q++) {
        in[q] = tail16(m, 16 * q);
        x[q] = _mm512_mask_loadu_ps(_mm512_set1_ps(INFINITY), in[q], vals + 16 * q);
        g[q] = _mm512_setzero_ps();
    }
    for (int64_t j = 0; j < m; j++) { /* candidate j's mass counts for the candidates at or below it */
        const __m512 xj = _mm512_set1_ps(vals[j]), pj = _mm512_set1_ps(ps[j]);
        g[0] = _mm512_mask_add_ps(g[0], _mm512_cmp_ps_mask(x[0], xj, _CMP_LE_OQ), g[0], pj);
        if (m > 16) g[1] = _mm512_mask_add_ps(g[1], _mm512_cmp_ps_mask(x[1], xj, _CMP_LE_OQ), g[1], pj);
        if (m > 32) g[2] = _mm512_mask_add_ps(g[2], _mm512_cmp_ps_mask(x[2], xj, _CMP_LE_OQ), g[2], pj);
    }
    const __m512 need = _mm512_set1_ps((float)(goal.hi - base)), ninf = _mm512_set1_ps(-INFINITY);
    __m512 best = ninf, lowest = _mm512_set1_ps(INFINITY);
    for (int q = 0; q < 3; q++) {
        best = _mm512_max_ps(best, _mm512_mask_mov_ps(ninf, in[q] & _mm512_cmp_ps_mask(g[q], need, _CMP_GE_OQ), x[q]));
        lowest = _mm512_min_ps(lowest, x[q]);
    }
    float w = _mm512_reduce_max_ps(best);
    if (w == -INFINITY) w = _mm512_reduce_min_ps(lowest); /* none reached, by the estimate: the lowest value */
    const __m512 wv = _mm512_set1_ps(w);
    __m512d a[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    int64_t n_at = 0;
    float pw = 0.0f;
    for (int q = 0; q < 3; q++) {
        const __m512 pv = _mm512_maskz_loadu_ps(in[q], ps + 16 * q);
        const __mmask16 gt = _mm512_mask_cmp_ps_mask(in[q], x[q], wv, _CMP_GT_OQ), eq = _mm512_mask_cmp_ps_mask(in[q], x[q], wv, _CMP_EQ_OQ);
        a[q & 1] = _mm512_mask_add_pd(a[q & 1], (__mmask8)gt, a[q & 1], w_lo(pv));
        a[2 + (q & 1)] = _mm512_mask_add_pd(a[2 + (q & 1)], (__mmask8)(gt >> 8), a[2 + (q & 1)], w_hi(pv));
        if (eq) n_at += __builtin_popcount(eq), pw = ps[16 * q + __builtin_ctz(eq)];
    }
    *v = w, *above_v = base + w_sum4(a), *ties = n_at, *p_at = pw;
    return n_at > 0;
}

/* mass:P's threshold v from the candidates (values, probabilities) of mass_expf_avx512's band where it holds
   v (m >= 0: then base, the mass above it, and tot, its own), else from the whole row: a band of the
   candidates (band_of on strided samples of them, now with their exact mass) while more than RANK_MAX of them
   are left, or where a band misses v, a split around a pivot (the median of three candidates), keeping the
   side where v lies and adding the mass above it to `base`; at most RANK_MAX candidates are ranked
   (mass_rank). A band is compacted into the other of two buffers, a split in place (a write never passes
   the read).
   On mass_float_avx512's float probabilities p (their sums in double); v is a candidate, which the caller
   keeps only where it certifies it, with what mass_above_avx512 would say of v: the mass strictly above it
   (*above: base and the candidates above, summed in another order, which the certification's margin covers),
   the classes at it (*ties: all are candidates at every step) and their probability (*p_at). Returns 0 where
   no v came out. cv, cp: 2 (c + 16) scratch each, holding the band's candidates on entry where m >= 0. */
#define PICK_LEVELS 48 /* a row that needs more (adversarial pivots) is left to the bisection */
W_FN int mass_pick_avx512(const float *t, const float *p, int64_t c, double z, goal_t goal, float *cv, float *cp,
                          int64_t m, double base, double tot, float *v, double *above_v, int64_t *ties, float *p_at) {
    float *const bv[2] = {cv, cv + c + 16}, *const bp[2] = {cp, cp + c + 16}; /* two buffers: a band never
                                                                                  overwrites its own candidates */
    int cur = 0; /* the buffer holding the candidates, -1: the row itself */
    int banded = 0; /* a band of the candidates missed v at this size */
    if (m < 0) cur = -1, m = c, base = 0.0, tot = z; /* a band of the row again, on the exact total now */
    for (int level = 0; m > 0 && level < PICK_LEVELS; level++) {
        const float *vals = cur < 0 ? t : bv[cur], *ps = cur < 0 ? p : bp[cur];
        if (m <= RANK_MAX) return mass_rank(vals, ps, m, base, goal, v, above_v, ties, p_at);
        if (!banded && m >= 2 * BAND_SAMPLES && m <= INT32_MAX) { /* (32-bit sample indices) */
            float xs[BAND_SAMPLES], xp[BAND_SAMPLES];
            double up, in_band;
            const int to = cur == 0 ? 1 : 0;
            band_samples(vals, ps, m, xs, xp); /* the samples' share of the mass below v: */
            const float need = (float)((tot - (goal.hi - base)) * BAND_SAMPLES / (double)m);
            const int64_t n = band_pass(vals, ps, m, band_of(xs, xp, need), bv[to], bp[to], &up, &in_band);
            if (!reaches(base + up, goal) && reaches(base + up + in_band, goal)) {
                base += up, tot = in_band, m = n, cur = to;
                continue;
            }
            banded = 1; /* v is not in the band: a split of the same candidates */
        }
        float a = vals[m / 4], b = vals[m / 2], d = vals[(3 * m) / 4]; /* in class order, any rank */
        float med = a < b ? (b < d ? b : (a < d ? d : a)) : (a < d ? a : (b < d ? d : b));
        const __m512 x = _mm512_set1_ps(med);
        __m512d hi[4], eq[4]; /* four chains each (w_sum4) */
        for (int j = 0; j < 4; j++) hi[j] = eq[j] = _mm512_setzero_pd();
        int64_t at_n = 0;
        float at_p = 0.0f;
        for (int64_t i = 0; i < m; i += 32)
            for (int h = 0; h < 2; h++) {
                const __mmask16 in = tail16(m, i + 16 * h);
                const __m512 y = _mm512_maskz_loadu_ps(in, vals + i + 16 * h), pv = _mm512_maskz_loadu_ps(in, ps + i + 16 * h);
                const __mmask16 gt = _mm512_mask_cmp_ps_mask(in, y, x, _CMP_GT_OQ), eq16 = _mm512_mask_cmp_ps_mask(in, y, x, _CMP_EQ_OQ);
                const __m512d pa = w_lo(pv), pb = w_hi(pv);
                if (eq16) at_n += __builtin_popcount(eq16), at_p = ps[i + 16 * h + __builtin_ctz(eq16)];
                hi[2 * h] = _mm512_mask_add_pd(hi[2 * h], (__mmask8)gt, hi[2 * h], pa);
                hi[2 * h + 1] = _mm512_mask_add_pd(hi[2 * h + 1], (__mmask8)(gt >> 8), hi[2 * h + 1], pb);
                eq[2 * h] = _mm512_mask_add_pd(eq[2 * h], (__mmask8)eq16, eq[2 * h], pa);
                eq[2 * h + 1] = _mm512_mask_add_pd(eq[2 * h + 1], (__mmask8)(eq16 >> 8), eq[2 * h + 1], pb);
            }
        const double hi_m = w_sum4(hi), at = w_sum4(eq);
        int above; /* the side kept: above the pivot (1) or below it (0) */
        if (reaches(base + hi_m, goal)) {
            above = 1, tot = hi_m;
        } else if (reaches(base + hi_m + at, goal)) {
            *v = med, *above_v = base + hi_m, *ties = at_n, *p_at = at_p;
            return 1;
        } else {
            base += hi_m + at, tot -= hi_m + at, above = 0;
        }
        const int to = cur < 0 ? 0 : cur; /* in place, or from the row */
        int64_t w = 0;
        for (int64_t i = 0; i < m; i += 16) {
            const __mmask16 in = tail16(m, i);
            __m512 y = _mm512_maskz_loadu_ps(in, vals + i);
            __mmask16 k = above ? _mm512_mask_cmp_ps_mask(in, y, x, _CMP_GT_OQ) : _mm512_mask_cmp_ps_mask(in, y, x, _CMP_LT_OQ);
            _mm512_storeu_ps(bv[to] + w, _mm512_maskz_compress_ps(k, y));
            _mm512_storeu_ps(bp[to] + w, _mm512_maskz_compress_ps(k, _mm512_maskz_loadu_ps(in, ps + i)));
            w += __builtin_popcount(k);
        }
        m = w, cur = to, banded = 0;
    }
    return 0;
}

/* mass:P's threshold v for a peaked row, in about one light pass: pass 1's lane maxima are the largest
   values of 16 disjoint sets of classes, so where the first j of them (in the rule's order) hold the goal's
   mass, v >= w, their j-th value, and S lies among the classes at or above w (a handful in a peaked row).
   Those are compressed as topk_avx512 does, put in the rule's order (value desc, index asc: an insertion
   in class order) and their masses cumulated in that order; v is the value where the sum reaches the goal.
   A candidate, as mass_pick_avx512's (mass_float_avx512 certifies it). Returns 0 where the lanes do not
   hold the goal (a flat row: mass_pick_avx512 then) or more than MASS_LANES_MAX classes lie above w. */
#define MASS_LANES_MAX 64
W_FN int mass_lanes_avx512(const float *t, const float *p, int64_t c, const row_t *row, double inv_t, goal_t goal,
                           float *cv, int32_t *ci, float *v) {
    if (row->n_lanes != 16) return 0;
    const __m512 lv = _mm512_loadu_ps(row->lanes);
    const __m512d mx = _mm512_set1_pd(row->tmax), it = _mm512_set1_pd(inv_t);
    double lp[16], sp[16];
    float sv[16];
    _mm512_storeu_pd(lp, w_exp_pd(_mm512_mul_pd(_mm512_sub_pd(w_lo(lv), mx), it)));
    _mm512_storeu_pd(lp + 8, w_exp_pd(_mm512_mul_pd(_mm512_sub_pd(w_hi(lv), mx), it)));
    for (int j = 0; j < 16; j++) { /* each lane's rank in (value desc, lane asc) order */
        const __m512 x = _mm512_set1_ps(row->lanes[j]);
        unsigned before = _mm512_cmp_ps_mask(lv, x, _CMP_GT_OQ) | (_mm512_cmp_ps_mask(lv, x, _CMP_EQ_OQ) & ((1u << j) - 1));
        int rank = __builtin_popcount(before);
        sv[rank] = row->lanes[j], sp[rank] = lp[j];
    }
    double cum = 0.0;
    int j = 0;
    for (; j < 16 && !reaches(cum += sp[j], goal); j++) {
    }
    if (j == 16) return 0;
    const __m512 w = _mm512_set1_ps(sv[j]);
    const int64_t c16 = c & ~(int64_t)15;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int64_t m = 0;
    for (int64_t i = 0; i < c16; i += 16) {
        const __m512 x = _mm512_load_ps(t + i);
        const __mmask16 k = _mm512_cmp_ps_mask(x, w, _CMP_GE_OQ);
        if (!k) continue;
        if (m > MASS_LANES_MAX) return 0;
        _mm512_storeu_ps(cv + m, _mm512_maskz_compress_ps(k, x));
        _mm512_storeu_si512(ci + m, _mm512_maskz_compress_epi32(k, _mm512_add_epi32(lane, _mm512_set1_epi32((int)i))));
        m += __builtin_popcount(k);
    }
    for (int64_t i = c16; i < c; i++)
        if (t[i] >= sv[j]) {
            if (m > MASS_LANES_MAX) return 0;
            cv[m] = t[i], ci[m++] = (int32_t)i;
        }
    for (int64_t a = 1; a < m; a++) { /* the rule's order; offered in class order, so equal values keep it */
        const float x = cv[a];
        const int32_t xi = ci[a];
        int64_t b = a;
        for (; b > 0 && x > cv[b - 1]; b--) cv[b] = cv[b - 1], ci[b] = ci[b - 1];
        cv[b] = x, ci[b] = xi;
    }
    cum = 0.0;
    for (int64_t a = 0; a < m; a++)
        if (reaches(cum += p[ci[a]], goal)) {
            *v = cv[a];
            return 1;
        }
    return 0;
}

/* p~ into pf and their sum; *err: the bound E below. With `common` (a row of pass 4's common way: span at
   most COMMON_SPAN T, no LS), x = t / T - max t / T as pass 4 forms it (one fused multiply-subtract in float
   from 1/T and max t / T rounded to float) and p~ by w_exp_inrange, over the row's padding too (cp classes):
   these are pass 4's weights e^b to the bit, which it then reuses. Rounding 1/T and the shift scales every p~
   by one common factor, which no comparison of a mass with P times the total sees, and moves each x by at
   most 6e-8 |x| + 6e-8 of that factor's exponent, 1.2e-7 |max t / T| (the products of roundings, 1e-14
   |max t / T|, bound the second); with the fused operation's own rounding, 1.2e-7 |x| + 1e-14 |max t / T|
   in all; and x >= -COMMON_SPAN flushes nothing. With a band (b), the same pass is the band's (band_pass):
   the mass above it into *up, in it into *in_band, its classes compacted into cv, cp; returns their number
   in *bm (-1 without a band). */
W_INLINE double mass_expf_body(const float *t, int64_t c, int64_t cp, float tmax, double inv_t, float *pf, double *err,
                               const int common, const int banded, band_t b, float *cv, float *cpb, int64_t *bm,
                               double *up, double *in_band) {
    __m512d z[4], a[4], u[4], w[4]; /* four chains each (w_sum4) */
    for (int j = 0; j < 4; j++) z[j] = a[j] = u[j] = w[j] = _mm512_setzero_pd();
    __m512 af[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}; /* sum p~ |x|: float partials of FLUSH terms a lane */
    const __m512 lo = _mm512_set1_ps(b.lo), hi = _mm512_set1_ps(b.hi);
    int64_t n = 0;
    const __m512 itf = _mm512_set1_ps((float)inv_t), shift = _mm512_set1_ps((float)((double)tmax * inv_t));
    const __m512d mx = _mm512_set1_pd(tmax), it = _mm512_set1_pd(inv_t), floor = _mm512_set1_pd(-100.0);
    const int64_t end = common ? cp : c;
    for (int64_t i = 0, step = 1; i < end; i += 32, step++) {
        for (int h = 0; h < 2; h++) {
            const int64_t at = i + 16 * h;
            if (common && at >= cp) break;
            const __mmask16 in = tail16(c, at);
            __m512 e;
            __m512d el, eh; /* e in double */
            const __m512 y = common ? _mm512_load_ps(t + at) : _mm512_maskz_loadu_ps(in, t + at);
            if (common) {
                const __m512 x = _mm512_fmsub_ps(y, itf, shift); /* as p4_body */
                e = w_exp_inrange(x);
                _mm512_store_ps(pf + at, e);
                const __m512 ec = _mm512_maskz_mov_ps(in, e);
                el = w_lo(ec), eh = w_hi(ec);
                af[h] = _mm512_fmadd_ps(ec, _mm512_abs_ps(x), af[h]);
            } else {
                const __m512d xl = _mm512_max_pd(_mm512_mul_pd(_mm512_sub_pd(w_lo(y), mx), it), floor);
                const __m512d xh = _mm512_max_pd(_mm512_mul_pd(_mm512_sub_pd(w_hi(y), mx), it), floor);
                const __m512 x = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(xl)), _mm512_cvtpd_ps(xh), 1);
                e = _mm512_maskz_mov_ps(in, w_exp(x));
                _mm512_mask_storeu_ps(pf + at, in, e);
                el = w_lo(e), eh = w_hi(e);
                af[h] = _mm512_fmadd_ps(e, _mm512_abs_ps(x), af[h]);
            }
            z[2 * h] = _mm512_add_pd(z[2 * h], el), z[2 * h + 1] = _mm512_add_pd(z[2 * h + 1], eh);
            if (banded) {
                const __mmask16 gt = _mm512_mask_cmp_ps_mask(in, y, hi, _CMP_GT_OQ);
                const __mmask16 bd = _mm512_mask_cmp_ps_mask(in, y, lo, _CMP_GE_OQ) & ~gt;
                u[2 * h] = _mm512_mask_add_pd(u[2 * h], (__mmask8)gt, u[2 * h], el);
                u[2 * h + 1] = _mm512_mask_add_pd(u[2 * h + 1], (__mmask8)(gt >> 8), u[2 * h + 1], eh);
                w[2 * h] = _mm512_mask_add_pd(w[2 * h], (__mmask8)bd, w[2 * h], el);
                w[2 * h + 1] = _mm512_mask_add_pd(w[2 * h + 1], (__mmask8)(bd >> 8), w[2 * h + 1], eh);
                _mm512_storeu_ps(cv + n, _mm512_maskz_compress_ps(bd, y));
                _mm512_storeu_ps(cpb + n, _mm512_maskz_compress_ps(bd, e));
                n += __builtin_popcount(bd);
            }
        }
        if (step % FLUSH == 0 || i + 32 >= end)
            for (int h = 0; h < 2; h++) {
                a[2 * h] = _mm512_add_pd(a[2 * h], w_lo(af[h])), a[2 * h + 1] = _mm512_add_pd(a[2 * h + 1], w_hi(af[h]));
                af[h] = _mm512_setzero_ps();
            }
    }
    const double zs = w_sum4(z); /* (sum p~ |x| to 2e-7 from its float partials: within the 1.01 below) */
    if (common)
        *err = 1.01 * (1.2e-7 * w_sum4(a) + (3e-7 + 1e-14 * fabs((double)tmax * inv_t)) * zs) + 1e-15 * zs;
    else
        *err = 1.01 * (6e-8 * w_sum4(a) + 3e-7 * zs) + 1e-15 * zs + 2e-38 * (double)c;
    *bm = banded ? n : -1;
    if (banded) *up = w_sum4(u), *in_band = w_sum4(w);
    return zs;
}

W_FN double mass_expf_avx512(const float *t, int64_t c, int64_t cp, float tmax, double inv_t, int common, float *pf,
                             double *err, const band_t *b, float *cv, float *cpb, int64_t *bm, double *up,
                             double *in_band) {
    const band_t none = {0.0f, 0.0f};
    if (common)
        return b ? mass_expf_body(t, c, cp, tmax, inv_t, pf, err, 1, 1, *b, cv, cpb, bm, up, in_band)
                 : mass_expf_body(t, c, cp, tmax, inv_t, pf, err, 1, 0, none, cv, cpb, bm, up, in_band);
    return b ? mass_expf_body(t, c, cp, tmax, inv_t, pf, err, 0, 1, *b, cv, cpb, bm, up, in_band)
             : mass_expf_body(t, c, cp, tmax, inv_t, pf, err, 0, 0, none, cv, cpb, bm, up, in_band);
}

/* the mass of p~ strictly above v, the number of classes at v and the first of them (c if none) */
W_FN double mass_above_avx512(const float *t, const float *p, int64_t c, float v, int64_t *ties, int64_t *first) {
    const __m512 x = _mm512_set1_ps(v);
    __m512d a[4]; /* four chains (w_sum4) */
    for (int j = 0; j < 4; j++) a[j] = _mm512_setzero_pd();
    int64_t at = 0;
    *first = c;
    for (int64_t i = 0; i < c; i += 32)
        for (int h = 0; h < 2; h++) {
            const __mmask16 in = tail16(c, i + 16 * h);
            const __m512 y = _mm512_maskz_loadu_ps(in, t + i + 16 * h), pv = _mm512_maskz_loadu_ps(in, p + i + 16 * h);
            const __mmask16 gt = _mm512_mask_cmp_ps_mask(in, y, x, _CMP_GT_OQ);
            const __mmask16 eq = _mm512_mask_cmp_ps_mask(in, y, x, _CMP_EQ_OQ);
            if (eq && !at) *first = i + 16 * h + __builtin_ctz(eq);
            at += __builtin_popcount(eq);
            a[2 * h] = _mm512_mask_add_pd(a[2 * h], (__mmask8)gt, a[2 * h], w_lo(pv));
            a[2 * h + 1] = _mm512_mask_add_pd(a[2 * h + 1], (__mmask8)(gt >> 8), a[2 * h + 1], w_hi(pv));
        }
    *ties = at;
    return w_sum4(a);
}

/* mass:P's strong set from its threshold v: the classes above v and the first `take` at v (class order),
   into mask (1 = S, 0 = W; the padding's 2s kept), with what pass 3 and group_ref would find after it: the
   groups' sizes, their maxima (S holds the row's maximum, at its argmax) and W's reference, the first class
   at W's maximum (per lane the first at that lane's maximum, then the lowest of those lanes). One pass. */
W_FN void mass_groups_avx512(const float *t, int64_t c, float v, int64_t take, uint8_t *mask, row_t *row) {
    const __m512 x = _mm512_set1_ps(v);
    const __m512i sixteen = _mm512_set1_epi32(16);
    __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), widx = _mm512_setzero_si512();
    __m512 wmax = _mm512_set1_ps(-INFINITY);
    int64_t size = 0;
    for (int64_t i = 0; i < c; i += 16) {
        const __mmask16 in = tail16(c, i);
        const __m512 y = _mm512_maskz_loadu_ps(in, t + i);
        uint32_t s = _mm512_mask_cmp_ps_mask(in, y, x, _CMP_GT_OQ), eq = _mm512_mask_cmp_ps_mask(in, y, x, _CMP_EQ_OQ);
        for (; eq && take > 0; take--) s |= eq & -eq, eq &= eq - 1; /* the lowest classes at v enter first */
        _mm_mask_storeu_epi8(mask + i, in, _mm_maskz_set1_epi8((__mmask16)s, 1));
        size += __builtin_popcount(s);
        const __mmask16 gw = _mm512_mask_cmp_ps_mask(in & (__mmask16)~s, y, wmax, _CMP_GT_OQ);
        wmax = _mm512_mask_mov_ps(wmax, gw, y), widx = _mm512_mask_mov_epi32(widx, gw, lane);
        lane = _mm512_add_epi32(lane, sixteen);
    }
    group_t *S = &row->g[0], *W = &row->g[1];
    S->size = size, S->mt = row->tmax, S->ref = row->targ;
    W->size = c - size;
    if (W->size) {
        W->mt = _mm512_reduce_max_ps(wmax);
        const __mmask16 at = _mm512_cmp_ps_mask(wmax, _mm512_set1_ps(W->mt), _CMP_EQ_OQ);
        W->ref = _mm512_reduce_min_epi32(_mm512_mask_mov_epi32(_mm512_set1_epi32(INT32_MAX), at, widx));
    }
}

/* mass:P in float, certified. The probabilities p~ = e^x in float (x = (t - max t) / T taken in double, then
   rounded: a relative error of at most 6e-8 |x| + 3e-7 each, none where x < -87 flushes a p below 2e-38 to 0),
   so that a subset's mass in double is off its exact value by at most E = sum_i p~_i (6e-8 |x_i| + 3e-7), plus
   the flushed terms; on rows of pass 4's common way, x is pass 4's own and E as mass_expf_avx512 says, and
   pass 4 then reuses p~ as its weights (row->eb_common). The pass that computes p~ also compacts the band of
   the row's likely thresholds (band_of, from strided samples before p~ is known: their p~ in float and the
   total estimated from them and the lane maxima), and the lane maxima's p~ in float skip mass_lanes_avx512
   where they certainly fall short of the goal. v comes from the lanes or the selection on p~, and the set is kept only where every
   decision that made it is certain: the mass above v and each step of the walk through the classes at v stay
   further than (1 + P) E from P times the total (the total is off by E too). Then it is the set of exact
   arithmetic, hence the float64 decision's; elsewhere (a row within about 1e-6 of a decision: a few in a
   thousand) the caller decides in double. Returns 1 with the set in mask and the groups in row
   (mass_groups_avx512), or 0. */
W_FN int mass_float_avx512(const call_t *cl, scratch_t *sc, row_t *row, uint8_t *mask) {
    const int64_t c = cl->c;
    const float *t = sc->tf;
    double err;
    row->eb_common = !cl->standardize && ((double)row->tmax - (double)row->tmin) * cl->inv_t <= COMMON_SPAN;
    float *const pf = row->eb_common ? sc->eb : sc->pf;
    /* the band of the row, before its p~ are known: from its strided samples, their p~ estimated in float,
       and the total estimated from them and pass 1's lane maxima (the heavy top of the row, which the samples
       would miss or overweight): the lane maxima's own, and c / BAND_SAMPLES times the samples' other than those */
    band_t band = {0.0f, 0.0f};
    float lanes_mass = INFINITY; /* the lane maxima's p~, estimated in float: mass_lanes_avx512 is skipped where
                                    it is certainly short of the goal (1e-5 relative covers the estimate) */
    const int banded = c >= 8 * BAND_SAMPLES && c <= INT32_MAX && row->n_lanes == 16;
    if (banded) {
        float xs[BAND_SAMPLES], xp[BAND_SAMPLES];
        const __m512 itf = _mm512_set1_ps((float)cl->inv_t), mx = _mm512_set1_ps(row->tmax), lv = _mm512_loadu_ps(row->lanes);
        const __m512i c16 = _mm512_set1_epi32((int32_t)(c & ~(int64_t)15)), fifteen = _mm512_set1_epi32(15);
        __m512i i[2];
        band_index(c, &i[0], &i[1]);
        __m512 e[2];
        __mmask16 other[2]; /* the samples other than their lane's maximum */
        for (int h = 0; h < 2; h++) {
            const __m512 x = _mm512_i32gather_ps(i[h], t, 4);
            _mm512_storeu_ps(xs + 16 * h, x);
            e[h] = w_exp(_mm512_mul_ps(_mm512_sub_ps(x, mx), itf));
            _mm512_storeu_ps(xp + 16 * h, e[h]);
            other[h] = _mm512_cmp_ps_mask(x, _mm512_permutexvar_ps(_mm512_and_si512(i[h], fifteen), lv), _CMP_NEQ_UQ) |
                       _mm512_cmpge_epi32_mask(i[h], c16);
        }
        const float lanes = _mm512_reduce_add_ps(w_exp(_mm512_mul_ps(_mm512_sub_ps(lv, mx), itf)));
        const float rest = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_maskz_mov_ps(other[0], e[0]), _mm512_maskz_mov_ps(other[1], e[1])));
        const int n_other = __builtin_popcount(other[0]) + __builtin_popcount(other[1]);
        const double z_est = lanes + (double)rest * (double)(c - 16) / (n_other ? n_other : 1);
        lanes_mass = lanes;
        band = band_of(xs, xp, (float)((1.0 - cl->mass_p) * z_est * BAND_SAMPLES / (double)c));
    }
    int64_t bm;
    double b_up = 0.0, b_in = 0.0;
    const double z = mass_expf_avx512(t, c, sc->cp, row->tmax, cl->inv_t, row->eb_common, pf, &err,
                                      banded ? &band : NULL, sc->sel, sc->pc, &bm, &b_up, &b_in);
    const goal_t goal = exact_product(cl->mass_p, z);
    if (bm >= 0 && (reaches(b_up, goal) || !reaches(b_up + b_in, goal))) bm = -1; /* v is not in the band */
    const double margin = (1.0 + cl->mass_p) * err, below = goal.hi - margin, beyond = goal.hi + margin;
    float v, pvf;
    int64_t ties, first;
    double cum;
    if (lanes_mass * 1.001 >= goal.hi &&
        mass_lanes_avx512(t, pf, c, row, cl->inv_t, goal, sc->sel + c + 16, (int32_t *)(sc->pc + c + 16), &v)) {
        cum = mass_above_avx512(t, pf, c, v, &ties, &first);
        pvf = ties ? pf[first] : 0.0f;
    } else if (!mass_pick_avx512(t, pf, c, z, goal, sc->sel, sc->pc, bm, b_up, b_in, &v, &cum, &ties, &pvf)) {
        return 0;
    }
    if (!(cum < below) || ties < 1) return 0;
    const double pv = pvf;
    int64_t take = 0; /* the classes at v that enter: until the mass certainly reaches P */
    while (!(cum >= beyond)) {
        if (!(cum < below) || take == ties) return 0; /* uncertain, or v was not the threshold */
        cum += pv, take++;
    }
    mass_groups_avx512(t, c, v, take, mask, row);
    return 1;
}

/* LS statistics (see ls_sums_scalar), 8 classes at a time (AVX2, on AVX-512 machines too: three light passes
   a row), the last c % 8 classes in scalar */
V_FN void ls_sums_avx2(const float *t, const float *s, int64_t c, double *st, double *ss) {
    const int64_t c8 = c & ~(int64_t)7;
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
    for (int64_t i = 0; i < c8; i += 8) {
        __m256 x = _mm256_load_ps(t + i), y = _mm256_load_ps(s + i);
        a0 = _mm256_add_pd(a0, v_lo(x)), a1 = _mm256_add_pd(a1, v_hi(x));
        b0 = _mm256_add_pd(b0, v_lo(y)), b1 = _mm256_add_pd(b1, v_hi(y));
    }
    ls_sums_scalar(t + c8, s + c8, c - c8, st, ss);
    *st += v_hsum_pd(_mm256_add_pd(a0, a1)), *ss += v_hsum_pd(_mm256_add_pd(b0, b1));
}

V_FN void ls_squares_avx2(const float *t, const float *s, int64_t c, double mt, double ms, double *vt, double *vs) {
    const int64_t c8 = c & ~(int64_t)7;
    const __m256d m_t = _mm256_set1_pd(mt), m_s = _mm256_set1_pd(ms);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
    for (int64_t i = 0; i < c8; i += 8) {
        __m256 x = _mm256_load_ps(t + i), y = _mm256_load_ps(s + i);
        __m256d xl = _mm256_sub_pd(v_lo(x), m_t), xh = _mm256_sub_pd(v_hi(x), m_t);
        __m256d yl = _mm256_sub_pd(v_lo(y), m_s), yh = _mm256_sub_pd(v_hi(y), m_s);
        a0 = _mm256_fmadd_pd(xl, xl, a0), a1 = _mm256_fmadd_pd(xh, xh, a1);
        b0 = _mm256_fmadd_pd(yl, yl, b0), b1 = _mm256_fmadd_pd(yh, yh, b1);
    }
    ls_squares_scalar(t + c8, s + c8, c - c8, mt, ms, vt, vs);
    *vt += v_hsum_pd(_mm256_add_pd(a0, a1)), *vs += v_hsum_pd(_mm256_add_pd(b0, b1));
}

V_FN double ls_dmax_avx2(const call_t *cl, const float *t, const float *s, int64_t c) {
    const int64_t c8 = c & ~(int64_t)7;
    const p4ls_t ls = {_mm256_set1_pd(cl->dmean), _mm256_set1_pd(cl->mean_s), _mm256_set1_pd(cl->dinv)};
    const __m256d inv_t = _mm256_set1_pd(cl->inv_t), sign = _mm256_set1_pd(-0.0);
    __m256d m = _mm256_setzero_pd();
    for (int64_t i = 0; i < c8; i += 8) {
        __m256 x = _mm256_load_ps(t + i), y = _mm256_load_ps(s + i);
        m = _mm256_max_pd(m, _mm256_andnot_pd(sign, v_ls_d(v_lo(x), v_lo(y), inv_t, &ls)));
        m = _mm256_max_pd(m, _mm256_andnot_pd(sign, v_ls_d(v_hi(x), v_hi(y), inv_t, &ls)));
    }
    __m128d h = _mm_max_pd(_mm256_castpd256_pd128(m), _mm256_extractf128_pd(m, 1));
    double v = _mm_cvtsd_f64(_mm_max_sd(h, _mm_unpackhi_pd(h, h))), tail = ls_dmax_scalar(cl, t + c8, s + c8, c - c8);
    return tail > v ? tail : v;
}

static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}

V_FN double mass_probe_avx2(const float *t, const double *p, int64_t c, float theta, int strict) {
    const int64_t c8 = c & ~(int64_t)7;
    const __m256 th = _mm256_set1_ps(theta);
    __m256d a = _mm256_setzero_pd(), b = a;
    for (int64_t i = 0; i < c8; i += 8) {
        __m256 v = _mm256_load_ps(t + i);
        __m256 k = strict ? _mm256_cmp_ps(v, th, _CMP_GT_OQ) : _mm256_cmp_ps(v, th, _CMP_GE_OQ);
        a = _mm256_add_pd(a, _mm256_and_pd(v_mask_lo(k), _mm256_loadu_pd(p + i)));
        b = _mm256_add_pd(b, _mm256_and_pd(v_mask_hi(k), _mm256_loadu_pd(p + i + 4)));
    }
    return v_hsum_pd(_mm256_add_pd(a, b)) + mass_probe_scalar(t + c8, p + c8, c - c8, theta, strict);
}

/* groups_double's two passes (see there), 8 classes at a time: e^b (w_exp_pd, ~1 ulp) and d - d_ref in
   double into eb64, dd64 with both groups' sums (pass A); then sum e^b phi(u) per group (pass B), phi by
   its series where |u| < 0.1 (as phi_d) and as e^u - 1 - u above (relative error < 5e-14 there). Padding
   lanes (mask 2) count in neither group. */
W_FN void double_sums_avx512(const call_t *cl, scratch_t *sc, const row_t *row, const double dref[2], double out[4]) {
    k4_t k;
    k.inv_t = _mm512_set1_pd(cl->inv_t), k.dmean = _mm512_set1_pd(cl->dmean);
    k.mean_s = _mm512_set1_pd(cl->mean_s), k.dinv = _mm512_set1_pd(cl->dinv);
    const __m512d mt_s = _mm512_set1_pd(row->g[0].mt), mt_w = _mm512_set1_pd(row->g[1].mt);
    const __m512d dr_s = _mm512_set1_pd(dref[0]), dr_w = _mm512_set1_pd(dref[1]);
    __m512d zs = _mm512_setzero_pd(), zw = zs, ds = zs, dw = zs;
    for (int64_t i = 0; i < sc->cp; i += 8) {
        __m128i m = _mm_loadl_epi64((const __m128i *)(sc->mask + i));
        __mmask8 ks = _mm_cmpeq_epi8_mask(m, _mm_set1_epi8(1)), kw = _mm_cmpeq_epi8_mask(m, _mm_setzero_si128());
        __m512d t = _mm512_cvtps_pd(_mm256_load_ps(sc->tf + i)), s = _mm512_cvtps_pd(_mm256_load_ps(sc->sf + i));
        __m512d eb = w_exp_pd(_mm512_mul_pd(_mm512_sub_pd(t, _mm512_mask_blend_pd(ks, mt_w, mt_s)), k.inv_t));
        __m512d d = cl->standardize ? w_ls_d(t, s, &k) : _mm512_mul_pd(_mm512_sub_pd(t, s), k.inv_t);
        d = _mm512_sub_pd(d, _mm512_mask_blend_pd(ks, dr_w, dr_s));
        _mm512_store_pd(sc->eb64 + i, eb);
        _mm512_store_pd(sc->dd64 + i, d);
        zs = _mm512_mask_add_pd(zs, ks, zs, eb), zw = _mm512_mask_add_pd(zw, kw, zw, eb);
        ds = _mm512_mask3_fmadd_pd(eb, d, ds, ks), dw = _mm512_mask3_fmadd_pd(eb, d, dw, kw);
    }
    out[0] = _mm512_reduce_add_pd(zs), out[1] = _mm512_reduce_add_pd(zw);
    out[2] = _mm512_reduce_add_pd(ds), out[3] = _mm512_reduce_add_pd(dw);
}

W_FN void double_phi_avx512(const scratch_t *sc, const double dbar_c[2], double f[2]) {
    static const double inv_fact[] = {1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040,
                                      1.0 / 720,     1.0 / 120,    1.0 / 24,    1.0 / 6, 0.5};
    const __m512d db_s = _mm512_set1_pd(dbar_c[0]), db_w = _mm512_set1_pd(dbar_c[1]), one = _mm512_set1_pd(1.0);
    __m512d fs = _mm512_setzero_pd(), fw = fs;
    for (int64_t i = 0; i < sc->cp; i += 8) {
        __m128i m = _mm_loadl_epi64((const __m128i *)(sc->mask + i));
        __mmask8 ks = _mm_cmpeq_epi8_mask(m, _mm_set1_epi8(1)), kw = _mm_cmpeq_epi8_mask(m, _mm_setzero_si128());
        __m512d u = _mm512_sub_pd(_mm512_mask_blend_pd(ks, db_w, db_s), _mm512_load_pd(sc->dd64 + i));
        __m512d q = _mm512_set1_pd(1.0 / 39916800);
        for (int j = 0; j < 9; j++) q = _mm512_fmadd_pd(q, u, _mm512_set1_pd(inv_fact[j]));
        __m512d series = _mm512_mul_pd(_mm512_mul_pd(u, u), q);
        __m512d direct = _mm512_sub_pd(_mm512_sub_pd(w_exp_pd(u), one), u);
        __mmask8 small = _mm512_cmp_pd_mask(_mm512_abs_pd(u), _mm512_set1_pd(0.1), _CMP_LT_OQ);
        __m512d term = _mm512_mul_pd(_mm512_load_pd(sc->eb64 + i), _mm512_mask_blend_pd(small, direct, series));
        fs = _mm512_mask_add_pd(fs, ks, fs, term), fw = _mm512_mask_add_pd(fw, kw, fw, term);
    }
    f[0] = _mm512_reduce_add_pd(fs), f[1] = _mm512_reduce_add_pd(fw);
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#else
static int cpu_has_avx2(void) { return 0; }
static int cpu_has_avx512(void) { return 0; }
#endif

/* ------------------------------------------------------------------------------------------------ */
/* One row.                                                                                            */

/* LS: the row's means and scales into the row's copy of the call (see the header), and max |d| into dxs. */
#ifdef DK_X86
#define LS_CALL(cl, f, ...) ((cl)->simd ? f##_avx2(__VA_ARGS__) : f##_scalar(__VA_ARGS__)) /* AVX2 where it runs */
#else
#define LS_CALL(cl, f, ...) f##_scalar(__VA_ARGS__)
#endif
static void row_scales(call_t *rc, const scratch_t *sc, row_t *row) {
    const int64_t c = rc->c;
    double st, ss, vt, vs;
    LS_CALL(rc, ls_sums, sc->tf, sc->sf, c, &st, &ss);
    rc->mean_t = st / (double)c, rc->mean_s = ss / (double)c;
    LS_CALL(rc, ls_squares, sc->tf, sc->sf, c, rc->mean_t, rc->mean_s, &vt, &vs);
    rc->inv_t = 1.0 / ((sqrt(vt / (double)(c - 1)) + LS_EPS) * rc->temp);
    rc->inv_s = 1.0 / ((sqrt(vs / (double)(c - 1)) + LS_EPS) * rc->temp);
    rc->dmean = rc->mean_t - rc->mean_s, rc->dinv = rc->inv_t - rc->inv_s;
    row->dxs = LS_CALL(rc, ls_dmax, rc, sc->tf, sc->sf, c);
}

static void write_row(const call_t *cl, int64_t r, const double *f, const int64_t *iv) {
    if (cl->mask_only) return;
    for (int q = 0; q < N_FOUT; q++) cl->fout[q][r] = f[q];
    for (int q = 0; q < N_IOUT; q++) cl->iout[q][r] = iv[q];
}

static int bad_row(const call_t *cl, int64_t r, int code) {
    double nan_[N_FOUT];
    int64_t neg[N_IOUT] = {-1, -1, -1, 0};
    for (int q = 0; q < N_FOUT; q++) nan_[q] = NAN;
    write_row(cl, r, nan_, neg);
    return code;
}

/* the first class of group g whose teacher logit is the group maximum */
static int64_t group_ref(const call_t *cl, const scratch_t *sc, const row_t *row, int g) {
    uint8_t want = g == 0 ? 1 : 0;
    if (sc->mask[row->targ] == want) return row->targ; /* the row's argmax is its group's */
#ifdef DK_X86
    if (cl->simd) return find_ref_avx2(sc, want, row->g[g].mt);
#endif
    for (int64_t i = 0; i < cl->c; i++)
        if (sc->mask[i] == want && sc->tf[i] == row->g[g].mt) return i;
    return 0; /* not reached */
}

/* KL_G = log kappa + log Zq - log Zp in double, for a group whose largest b + u is too large for pass 5.
   Returns -1 where log kappa (exact, with the group's own student maximum) is small enough after all. */
static double group_kl_large(const call_t *cl, const scratch_t *sc, const group_t *G, int g) {
    uint8_t want = g == 0 ? 1 : 0;
    float ms = -INFINITY;
    for (int64_t i = 0; i < cl->c; i++)
        if (sc->mask[i] == want && sc->sf[i] > ms) ms = sc->sf[i];
    double log_kappa = ((double)ms - wide_shift(cl, G->mt)) * cl->inv_s + G->dbar;
    if (log_kappa <= ARG_MAX - 1) return -1.0;
    double zq = 0.0;
    for (int64_t i = 0; i < cl->c; i++)
        if (sc->mask[i] == want) zq += exp(((double)sc->sf[i] - (double)ms) * cl->inv_s);
    return log_kappa + log(zq) - log(G->zp);
}

static mass_probe_t probe_for(const call_t *cl) {
#ifdef DK_X86
    if (cl->simd == 2) return mass_probe_avx512;
    if (cl->simd) return mass_probe_avx2;
#endif
    (void)cl;
    return mass_probe_scalar;
}

/* The strong set into sc->mask; for top-k with a small k and mass:P's certified rows on AVX-512, also the
   groups' sizes, maxima and reference classes (returns 1 then, 0 where pass 3 must find them). */
static int select_strong(const call_t *cl, scratch_t *sc, row_t *row, int64_t label) {
    const int64_t c = cl->c;
    uint8_t *mask = sc->mask;
    switch (cl->rule) {
    case RULE_TARGET:
        mask[label] = 1;
        return 0;
    case RULE_MASS: {
        mass_exp_t exps = mass_exp_scalar;
#ifdef DK_X86
        if (cl->simd == 2 && mass_float_avx512(cl, sc, row, mask)) return 1; /* most rows, certainly */
        if (cl->simd == 2) exps = mass_exp_avx512;
#endif
        double z = exps(sc->tf, c, row->tmax, cl->inv_t, sc->pd);
        const goal_t goal = exact_product(cl->mass_p, z);
        const mass_probe_t probe = probe_for(cl);
        threshold_select(sc->tf, c, row->tmin, row->tmax, sc->pd, goal, mask, probe);
        return 0;
    }
    case RULE_CORR: {
        const uint8_t *corr = cl->correlated + row->targ * c;
        for (int64_t i = 0; i < c; i++) mask[i] = corr[i] != 0;
        mask[row->targ] = 1; /* the prediction itself is always strong */
        return 0;
    }
    }
    const int64_t k = cl->k;
    if (k > TOPK_SMALL) {
        for (int64_t i = 0; i < c; i++) sc->pd[i] = 1.0;
        threshold_select(sc->tf, c, row->tmin, row->tmax, sc->pd, exact_product(1.0, (double)k), mask, probe_for(cl));
        if (cl->rule == RULE_TOPK_TARGET) mask[label] = 1;
        return 0;
    }
    /* the list holds k + 1 (top-k) or k + 2 (top-k + label) entries: enough to know W's maximum */
    int64_t cap = k + (cl->rule == RULE_TOPK ? 1 : 2);
    toplist_t l;
    l.filled = 0, l.cap = cap < c ? cap : c;
#ifdef DK_X86
    if (cl->simd == 2)
        topk_avx512(sc->tf, c, row, &l, sc->sel, sc->cand);
    else if (cl->simd)
        topk_avx2(sc->tf, c, row, &l);
    else
#endif
        for (int64_t i = 0; i < c; i++) toplist_offer(&l, sc->tf[i], i);
    for (int64_t j = 0; j < k; j++) mask[l.idx[j]] = 1;
    group_t *S = &row->g[0], *W = &row->g[1];
    S->size = k;
    int64_t w_at = k; /* the list entry holding W's maximum */
    if (cl->rule == RULE_TOPK_TARGET && !mask[label]) {
        mask[label] = 1;
        S->size = k + 1;
        if (l.idx[k] == label) w_at = k + 1;
    }
    S->mt = l.val[0], S->ref = l.idx[0];
    W->size = c - S->size;
    if (W->size) W->mt = l.val[w_at], W->ref = l.idx[w_at];
    return 1;
}

/* What the students of one call share on a row: the strong set (sc->mask) and the groups' sizes, teacher
   maxima and reference classes, decided by the first student's pass through the row; and, on AVX-512,
   e^b in sc->eb with the pass-4 way it was computed in (eb_mode: that way + 1; 0: none). All of it
   depends on the teacher only, so every student's results are those of a call of its own, bit for bit. */
typedef struct {
    int selected, eb_mode;
    int64_t size[2], ref[2];
    float mt[2];
    int teacher_read; /* AVX-512: the first student's pass 1 read the teacher's row, finite, into sc->tf */
    float tmax, tmin, lanes[16];
    int64_t targ;
    int n_lanes;
} share_t;

/* BCD, the masses and the row's terms into out[N_FOUT] from the groups' sums and in-group KLs, in double.
   Returns 1 where BCD's estimated error (eps, the relative rounding of D's parts) exceeds REDO_REL of it. */
static int64_t assemble(const call_t *cl, const row_t *row, double eps, double out[N_FOUT]) {
    const group_t *S = &row->g[0], *W = &row->g[1];
    double p_s = 1.0, p_w = 0.0, bcd = 0.0, q_s = 1.0;
    int64_t redo = 0;
    if (W->size) {
        /* log(p_W / p_S) from the group maxima and sums; p_S and p_W from one exp (p_W never as 1 - p_S) */
        double rho = ((double)W->mt - (double)S->mt) * cl->inv_t + log(W->zp / S->zp);
        double e = exp(-fabs(rho));
        p_s = rho > 0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
        p_w = rho > 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        /* D = K_S - K_W, K_G = KL_G - dbar_G = log E_{p^G}[e^{-d}]; the d_ref parts differenced first */
        double delta = (S->kl - W->kl) - (S->dref - W->dref) - (S->dbar_c - W->dbar_c);
        double v_s = p_w * delta, v_w = -p_s * delta;
        if (v_s <= 700 && v_w <= 700) {
            double phi_s = phi_d(v_s), x = p_s * phi_s + p_w * phi_d(v_w);
            bcd = log1p(x);
            /* q_S = p_S e^{v_S} / e^{BCD}, e^{v_S} = 1 + v_S + phi(v_S) without an exp where that cannot cancel */
            q_s = p_s * (fabs(v_s) < 0.5 ? 1.0 + v_s + phi_s : exp(v_s)) / (1.0 + x);
        } else { /* a huge D (KL_G of hundreds of nats): the same in log space */
            double l = log1p(e); /* softplus(+-rho) */
            double lp_s = rho > 0 ? -rho - l : -l, lp_w = rho > 0 ? -l : rho - l;
            bcd = logaddexp(lp_s + v_s, lp_w + v_w);
            q_s = exp(lp_s + v_s - bcd);
        }
        bcd = bcd > 0 ? bcd : 0.0;
        /* BCD is first-order sensitive to the rounding of D's parts (weights, d - d_ref and partial sums),
           about eps times their size; dBCD/dD is at most min(p_S p_W |D|, 1). Where that could exceed
           REDO_REL of BCD (and 1e-10 nats), the row is redone: a student that matches the group masses
           but not the groups' insides, with large logit differences. */
        double err = eps * (S->kl + W->kl + 2.0 * row->dxs);
        double slope = p_s * p_w * fabs(delta) < 1.0 ? p_s * p_w * fabs(delta) : 1.0;
        redo = slope * err > REDO_REL * bcd && slope * err > 1e-10;
    }
    out[OUT_BCD] = bcd;
    out[OUT_SCD] = S->kl;
    out[OUT_WCD] = W->kl;
    out[OUT_PS] = p_s;
    out[OUT_PW] = p_w;
    out[OUT_QS] = q_s;
    out[OUT_KL] = bcd + p_s * S->kl + p_w * W->kl;
    return redo;
}

/* Passes 4 and 5 again in double (exp, phi_d) over the same strong set, group shifts and references: the
   rows assemble() marks at float32's EPS_D. Each group's Zp, sum e^b (d - d_ref), dbar and KL_G are
   replaced. Returns 1 where the row goes to the caller after all: teacher logits spanning more than
   SPAN64_MAX T (weights could leave double's normal range), or an in-group KL too large for both ways. */
static int groups_double(const call_t *cl, scratch_t *sc, row_t *row, double span) {
    if (span > SPAN64_MAX) return 1;
    const int64_t c = cl->c;
    double dref[2] = {0, 0}, sums[4] = {0, 0, 0, 0}, f[2] = {0, 0}; /* sums: Zp S, W, sum e^b (d - d_ref) S, W */
    for (int g = 0; g < 2; g++) {
        const group_t *G = &row->g[g];
        const double t_ref = sc->tf[G->ref], s_ref = sc->sf[G->ref];
        if (G->size) dref[g] = cl->standardize ? ls_d(cl, t_ref, s_ref) : (t_ref - s_ref) * cl->inv_t;
    }
#ifdef DK_X86
    if (cl->simd == 2)
        double_sums_avx512(cl, sc, row, dref, sums);
    else
#endif
        for (int64_t i = 0; i < c; i++) {
            const int g = sc->mask[i] == 1 ? 0 : 1;
            const double t = sc->tf[i], s = sc->sf[i];
            const double eb = exp((t - row->g[g].mt) * cl->inv_t);
            const double dd = (cl->standardize ? ls_d(cl, t, s) : (t - s) * cl->inv_t) - dref[g];
            sc->eb64[i] = eb, sc->dd64[i] = dd;
            sums[g] += eb, sums[2 + g] += eb * dd;
        }
    double dbar_c[2];
    for (int g = 0; g < 2; g++) {
        group_t *G = &row->g[g];
        G->zp = sums[g], G->dsum = sums[2 + g], G->dref = dref[g];
        dbar_c[g] = G->dbar_c = G->size ? G->dsum / G->zp : 0.0;
        G->dbar = G->dref + G->dbar_c;
    }
#ifdef DK_X86
    if (cl->simd == 2)
        double_phi_avx512(sc, dbar_c, f);
    else
#endif
        for (int64_t i = 0; i < c; i++) {
            const int g = sc->mask[i] == 1 ? 0 : 1;
            f[g] += sc->eb64[i] * phi_d(dbar_c[g] - sc->dd64[i]);
        }
    for (int g = 0; g < 2; g++) {
        group_t *G = &row->g[g];
        G->kl = 0.0;
        if (G->size < 2) continue;
        if (isfinite(f[g])) {
            G->kl = log1p(f[g] / G->zp);
            continue;
        }
        const double large = group_kl_large(cl, sc, G, g);
        if (large < 0) return 1;
        G->kl = large;
    }
    return 0;
}

/* Returns 0, or the error code of this row. sh: NULL, or the row's share among the call's students. */
static int process_row(const call_t *cl, scratch_t *sc, int64_t r, share_t *sh) {
    const int64_t c = cl->c, cp = sc->cp;
    call_t rc; /* LS: the call with this row's scales (row_scales) */
    row_t row;
    memset(&row, 0, sizeof row);
    row.g[0].arg_max = row.g[1].arg_max = -INFINITY;
    next_row(cl, r, &row);
#ifdef DK_X86
    if (cl->simd == 2 && sh && sh->teacher_read) {
        row.tmax = sh->tmax, row.tmin = sh->tmin, row.targ = sh->targ, row.n_lanes = sh->n_lanes;
        memcpy(row.lanes, sh->lanes, sizeof row.lanes);
        pass1_student_avx512(cl, sc, r, &row);
    } else if (cl->simd == 2) {
        pass1_avx512(cl, sc, r, &row);
        if (sh && row.finite) { /* both finite: the teacher is, for the next students' pass1_student_avx512 */
            sh->teacher_read = 1, sh->tmax = row.tmax, sh->tmin = row.tmin, sh->targ = row.targ;
            sh->n_lanes = row.n_lanes;
            memcpy(sh->lanes, row.lanes, sizeof row.lanes);
        }
    } else if (cl->simd)
        pass1_avx2(cl, sc, r, &row);
    else
#endif
        pass1_scalar(cl, sc, &row, cl->t + r * cl->t_stride, cl->s + r * cl->s_stride, 0, -INFINITY, -INFINITY,
                     INFINITY, 0.0f, 0, 0, 1);
    if (cl->scan_out) { /* a scan: the argmax and finiteness only */
        cl->scan_out[r] = row.finite ? row.targ : -1;
        return row.finite ? OK : ERR_NONFINITE;
    }
    if (!row.finite) return bad_row(cl, r, ERR_NONFINITE);
    row.dxs = (double)row.dx * cl->inv_t;
    if (cl->standardize) {
        rc = *cl;
        row_scales(&rc, sc, &row);
        cl = &rc;
    }
    if (!(row.dxs <= DX_MAX)) { /* also t - s = inf in float: for the caller, in float64 */
        bad_row(cl, r, OK);
        if (!cl->mask_only) cl->iout[OUT_REDO][r] = 1;
        return OK;
    }
    for (int64_t i = c; i < cp; i++) sc->tf[i] = row.tmax, sc->sf[i] = row.smax; /* finite padding */
    int64_t label = -1;
    if (cl->rule == RULE_TARGET || cl->rule == RULE_TOPK_TARGET) {
        label = cl->labels[r];
        if (label < 0 || label >= c) return bad_row(cl, r, ERR_LABEL);
    }

    /* the strong set; group sizes, maxima, reference classes (or as another student's pass decided them) */
    if (sh && sh->selected) {
        for (int g = 0; g < 2; g++) row.g[g].size = sh->size[g], row.g[g].mt = sh->mt[g], row.g[g].ref = sh->ref[g];
    } else {
        memset(sc->mask, 0, (size_t)c);
        memset(sc->mask + c, 2, (size_t)(cp + 8 - c));
        int groups_known = select_strong(cl, sc, &row, label);
        if (cl->mask_out) memcpy(cl->mask_out + r * c, sc->mask, (size_t)c);
        if (cl->size_out) {
            int64_t size = 0;
            for (int64_t i = 0; i < c; i++) size += sc->mask[i] == 1;
            cl->size_out[r] = size;
        }
        if (cl->mask_only) return OK;
        if (!groups_known) {
#ifdef DK_X86
            if (cl->simd)
                pass3_avx2(cl, sc, &row);
            else
#endif
                pass3_portable(cl, sc, &row);
            for (int g = 0; g < 2; g++)
                if (row.g[g].size) row.g[g].ref = group_ref(cl, sc, &row, g);
        }
        if (sh) {
            sh->selected = 1;
            for (int g = 0; g < 2; g++) sh->size[g] = row.g[g].size, sh->mt[g] = row.g[g].mt, sh->ref[g] = row.g[g].ref;
        }
    }
    const float inv_tf = (float)cl->inv_t;
    for (int g = 0; g < 2; g++) {
        group_t *G = &row.g[g];
        const double t_ref = sc->tf[G->ref], s_ref = sc->sf[G->ref];
        G->dref = !G->size ? 0.0 : cl->standardize ? ls_d(cl, t_ref, s_ref) : (t_ref - s_ref) * cl->inv_t;
        row.dref_f[g] = G->size ? (sc->tf[G->ref] - sc->sf[G->ref]) * inv_tf : 0.0f; /* as pass 4 forms d */
        G->mt = G->size ? G->mt : 0.0f; /* an empty W: finite constants for the passes */
    }
    const double dx = row.dxs; /* max |d_i| */
    const double span = ((double)row.tmax - (double)row.tmin) * cl->inv_t;
    const int wide = span > SPAN_MAX;
    (void)wide; /* (used by the SIMD paths only) */
    const int float_d = cl->simd && dx <= FLOAT_D_X && !cl->standardize;
    /* pass 4's way: d - d_ref in double, or in float (then the SIMD passes take d - d_ref from d_ref in
       float: the sums are relative to it); and on AVX-512, for rows whose teacher logits span at most
       COMMON_SPAN T, one shift (max t) and one reference class (the argmax) for both groups, which
       spares pass 4 its per-lane selects and clamps: every weight is then >= e^-20 = 2e-9, far from
       float32's underflow even times a tiny phi, and any reference keeps |d - d_ref| <= 2 in float */
    const int mode4 = cl->standardize ? P4_SCALED
                      : !float_d      ? P4_DOUBLE
                                      : (cl->simd == 2 && span <= COMMON_SPAN ? P4_COMMON : P4_FLOAT);
    if (mode4 == P4_COMMON)
        for (int g = 0; g < 2; g++) {
            group_t *G = &row.g[g];
            if (!G->size) continue;
            G->mt = row.tmax, G->ref = row.targ;
            row.dref_f[g] = row.dref_f[0] = (sc->tf[row.targ] - sc->sf[row.targ]) * inv_tf;
        }
    if (float_d)
        for (int g = 0; g < 2; g++) row.g[g].dref = row.dref_f[g];

    /* e^b, d - d_ref and the group sums */
#ifdef DK_X86
    if (cl->simd == 2) {
        pass4_avx512(cl, sc, &row, mode4, (sh && sh->eb_mode == mode4 + 1) || (mode4 == P4_COMMON && row.eb_common));
        if (sh) sh->eb_mode = mode4 + 1;
    } else if (cl->simd)
        pass4_avx2(cl, sc, &row, cl->standardize ? 2 : float_d);
    else
#endif
        pass4_portable(cl, sc, &row);
    int need5 = 0;
    for (int g = 0; g < 2; g++) {
        group_t *G = &row.g[g];
        if (!G->size) continue;
        G->dbar_c = G->dsum / G->zp;
        G->dbar = G->dref + G->dbar_c;
        need5 |= G->size > 1;
    }

    /* the in-group KLs */
    if (need5) {
#ifdef DK_X86
        /* pass 5's way (see the header): the series alone where every |u| <= 2 max |d| is small; b + u
           from s in double where the teacher logits span more than SPAN_MAX T (weights e^b may have
           been flushed to 0 there); the unified phi otherwise */
        int mode = dx <= SERIES_X ? P5_SERIES : wide ? P5_WIDE : P5_UNIFIED;
        if (cl->simd == 2)
            pass5_avx512(cl, sc, &row, mode);
        else if (cl->simd)
            pass5_avx2(cl, sc, &row, mode);
        else
#endif
            pass5_portable(cl, sc, &row);
    }
    for (int g = 0; g < 2; g++) {
        group_t *G = &row.g[g];
        G->kl = 0.0;
        if (G->size < 2) continue;
        /* pass 5 overflowed (unified way: F = inf) or could have (wide way: an argument above ARG_MAX) */
        double large = G->arg_max > ARG_MAX || !isfinite(G->f) ? group_kl_large(cl, sc, G, g) : -1.0;
        G->kl = large >= 0 ? large : log1p((G->f > 0 ? G->f : 0.0) / G->zp);
    }

    /* BCD and the masses, in double; a row whose BCD float32 cannot give to REDO_REL is redone in double */
    double out[N_FOUT];
    int64_t redo = assemble(cl, &row, EPS_D, out);
    if (redo && cl->redo64) redo = groups_double(cl, sc, &row, span) || assemble(cl, &row, EPS_D64, out);
    int64_t iv[N_IOUT] = {row.g[0].size, row.targ, row.sarg, redo};
    write_row(cl, r, out, iv);
    return OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Threads: dynamic scheduling of row blocks over a pool of sleeping helpers.                        */

typedef struct {
    const call_t *cl; /* ns calls, one per student, alike but for the student and its outputs */
    int ns;
    int64_t next;  /* first row of the next block (atomic) */
    int64_t block; /* rows per block */
    int64_t error; /* lowest (row << 3 | code) seen (atomic); INT64_MAX for none */
} shared_t;

static void note_error(shared_t *sh, int64_t r, int code) {
    int64_t v = r << 3 | code, cur = __atomic_load_n(&sh->error, __ATOMIC_RELAXED);
    while (v < cur && !__atomic_compare_exchange_n(&sh->error, &cur, v, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* Take blocks of rows until none is left. Every participant (the caller and each helper) runs this. */
static void work(shared_t *sh) {
    const call_t *cl = sh->cl;
    scratch_t sc;
    if (scratch_init(&sc, cl->c, cl->rule) != 0) {
        note_error(sh, 0, ERR_MEMORY); /* the other participants still do every row */
        return;
    }
    for (;;) {
        int64_t r0 = __atomic_fetch_add(&sh->next, sh->block, __ATOMIC_RELAXED);
        if (r0 >= cl->n) break;
        int64_t r1 = r0 + sh->block < cl->n ? r0 + sh->block : cl->n;
        for (int64_t r = r0; r < r1; r++) { /* every student's pass through the row while it is in cache */
            share_t share;
            memset(&share, 0, sizeof share);
            for (int q = 0; q < sh->ns; q++) {
                int code = process_row(&cl[q], &sc, r, sh->ns > 1 ? &share : NULL);
                if (code) note_error(sh, r, code);
            }
        }
    }
    free(sc.block);
}

/* The pool. `generation` counts calls that used it; a helper that wakes to a new generation joins it
   while fewer than `wanted` helpers have (`joined`), works, and leaves (`active` counts those still
   working). Everything here is guarded by `lock`; `owner` is held by the one call using the pool. */
static struct {
    pthread_mutex_t lock, owner;
    pthread_cond_t wake, idle;
    int helpers; /* started and alive */
    unsigned long generation;
    int wanted, joined, active;
    shared_t *job;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, 0, 0, 0, NULL};

/* A forked child has only the thread that forked: it starts with an empty pool (the parent's helpers
   and locks are not its own). Python's multiprocessing forks, and so may a user's program. */
static void pool_after_fork(void) {
    pthread_mutex_init(&pool.lock, NULL);
    pthread_mutex_init(&pool.owner, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.idle, NULL);
    pool.helpers = pool.wanted = pool.joined = pool.active = 0;
    pool.job = NULL;
}

static pthread_once_t fork_hook = PTHREAD_ONCE_INIT;
static void register_fork_hook(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

static void *helper_main(void *arg) {
    unsigned long seen = (unsigned long)(uintptr_t)arg; /* the generation it was started in: joins the next */
#ifdef __linux__
    pthread_setname_np(pthread_self(), "cakd-decompose"); /* what top -H and /proc/PID/task/TID/comm show */
#endif
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock); /* blocks: no spinning */
        seen = pool.generation;
        if (pool.joined >= pool.wanted) continue; /* not needed for this call (or it is over) */
        pool.joined++, pool.active++;
        shared_t *job = pool.job;
        pthread_mutex_unlock(&pool.lock);
        work(job);
        pthread_mutex_lock(&pool.lock);
        if (--pool.active == 0) pthread_cond_signal(&pool.idle);
    }
    return NULL;
}

/* Runs `sh` on the calling thread and up to `helpers` pool threads; returns when every row is done. */
static void run_pooled(shared_t *sh, int helpers) {
    if (helpers < 1 || pthread_mutex_trylock(&pool.owner) != 0) { /* another call holds the pool */
        work(sh);
        return;
    }
    pthread_once(&fork_hook, register_fork_hook);
    pthread_mutex_lock(&pool.lock);
    while (pool.helpers < helpers) { /* start helpers up to what this call wants (at most MAX_THREADS - 1) */
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&tid, &attr, helper_main, (void *)(uintptr_t)pool.generation);
        pthread_attr_destroy(&attr);
        if (failed) break; /* fewer helpers: the rows still all get done */
        pool.helpers++;
    }
    pool.job = sh;
    pool.wanted = helpers < pool.helpers ? helpers : pool.helpers;
    pool.joined = pool.active = 0;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    work(sh); /* the caller works too: it never waits for a helper to be scheduled before starting */

    pthread_mutex_lock(&pool.lock);
    pool.wanted = pool.joined; /* a helper waking only now finds nothing to join (and no rows left) */
    while (pool.active > 0) pthread_cond_wait(&pool.idle, &pool.lock);
    pool.job = NULL;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.owner);
}

/* CPUs this process may run on (its affinity mask) */
int dk_cpu_count(void) {
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    return 1;
}

/* helper threads started so far (tests: the pool is reused, not regrown per call) */
int dk_pool_size(void) {
    pthread_mutex_lock(&pool.lock);
    int n = pool.helpers;
    pthread_mutex_unlock(&pool.lock);
    return n;
}

/* 0 portable, 1 AVX2 + FMA + F16C, 2 AVX-512 for passes 4 and 5 as well */
static int simd_level(int flags) {
    if (flags & FLAG_PORTABLE) return 0;
    if (!cpu_has_avx2()) return 0;
    return (flags & FLAG_NO_AVX512) || !cpu_has_avx512() ? 1 : 2;
}

int dk_simd_level(void) { return simd_level(0); }

int decompose_kernel_version(void) { return DK_ABI; }

/* The whole call: checks, then the rows over `threads` threads (the caller and threads - 1 helpers;
   threads <= 0: one per CPU of the affinity mask). Returns 0, or an error code with *bad_row set to the
   lowest offending row (ERR_NONFINITE, ERR_LABEL: their outputs are NaN / -1, the other rows are
   computed), ERR_MEMORY, ERR_ARGS. */
static int run(call_t *cl, int ns, int threads, int64_t *bad_row) {
    const int64_t n = cl->n, c = cl->c;
    *bad_row = -1;
    if (ns < 1 || n < 0 || c < 2 || c > INT32_MAX || !(cl->temp > 0) || !isfinite(cl->temp)) return ERR_ARGS;
    for (int q = 0; q < ns; q++)
        if ((cl[q].t_dtype != DT_F32 && cl[q].t_dtype != DT_F16) || (cl[q].s_dtype != DT_F32 && cl[q].s_dtype != DT_F16))
            return ERR_ARGS;
    if (cl->rule < RULE_TARGET || cl->rule > RULE_CORR) return ERR_ARGS;
    if ((cl->rule == RULE_TARGET || cl->rule == RULE_TOPK_TARGET) && !cl->labels) return ERR_ARGS;
    if (cl->rule == RULE_CORR && !cl->correlated) return ERR_ARGS;
    if (cl->rule == RULE_MASS && !(cl->mass_p > 0 && cl->mass_p < 1)) return ERR_ARGS;
    if (n == 0) return OK;
    for (int q = 0; q < ns; q++) {
        cl[q].k = cl[q].k < 1 ? 1 : (cl[q].k > c - 1 ? c - 1 : cl[q].k);
        cl[q].inv_t = cl[q].inv_s = 1.0 / cl[q].temp;
        cl[q].standardize = cl[q].standardize != 0;
    }
    int64_t block = BLOCK_ELEMS / c;
    shared_t sh = {.cl = cl, .ns = ns, .next = 0, .block = block < 1 ? 1 : block, .error = INT64_MAX};
    int64_t blocks = (n + sh.block - 1) / sh.block;
    int64_t m = threads > 0 ? threads : dk_cpu_count();
    if (m > MAX_THREADS) m = MAX_THREADS;
    if (m > blocks) m = blocks;
    run_pooled(&sh, (int)m - 1);
    if (sh.error == INT64_MAX) return OK;
    *bad_row = sh.error >> 3;
    return (int)(sh.error & 7);
}

/* ns students against one teacher, in one pass over the rows: each row's strong set (and, on AVX-512, its
   weights e^b) decided once and used for every student (share_t), while the teacher's row is in cache.
   teacher, students[q]: row r at base + r * stride bytes (any sign), dtype DT_F32 or DT_F16, class stride 1
   (s_strides, s_dtypes: (ns,)). labels: (n,) for the target rules; correlated: (c, c) bytes for corr. rule,
   k (top-k), mass_p (mass), temperature; standardize: 1 for logit standardization (see the header).
   fouts: ns x 7 arrays (n,) of double (kl, bcd, scd, wcd, p_S, p_W, q_S), iouts: ns x 4 arrays (n,) of
   int64 (|S|, teacher argmax, student argmax, redo), student after student. Each student's results are
   those of a call of its own, bit for bit; an error reports the lowest offending row over all students.
   flags: FLAG_PORTABLE / FLAG_NO_AVX512 force a narrower path, FLAG_NO_REDO64 marks the rows the double
   redo would take instead (tests). */
int dk_decompose_many(int64_t n, int64_t c, const void *teacher, int64_t t_stride, int t_dtype, int ns,
                      const void *const *students, const int64_t *s_strides, const int *s_dtypes, const int64_t *labels,
                      const uint8_t *correlated, int rule, int64_t k, double mass_p, double temperature,
                      int standardize, double *const *fouts, int64_t *const *iouts, int threads, int flags,
                      int64_t *bad_row) {
    *bad_row = -1;
    if (ns < 1 || ns > MAX_STUDENTS) return ERR_ARGS;
    call_t *cls = calloc((size_t)ns, sizeof(call_t));
    if (!cls) return ERR_MEMORY;
    for (int q = 0; q < ns; q++)
        cls[q] = (call_t){.n = n, .c = c, .t = teacher, .s = students[q], .t_stride = t_stride, .s_stride = s_strides[q],
                          .t_dtype = t_dtype, .s_dtype = s_dtypes[q], .labels = labels, .correlated = correlated,
                          .rule = rule, .k = k, .mass_p = mass_p, .temp = temperature,
                          .standardize = standardize, .fout = fouts + q * N_FOUT,
                          .iout = iouts + q * N_IOUT, .simd = simd_level(flags),
                          .redo64 = !(flags & FLAG_NO_REDO64)};
    int code = run(cls, ns, threads, bad_row);
    free(cls);
    return code;
}

/* The strong sets alone, by the same code and arguments as above: (n, c) bytes 1 = S into mask_out and
   each row's |S| into size_out (n,), either NULL (the sizes alone skip the (n, c) bytes). */
int dk_strong_mask(int64_t n, int64_t c, const void *teacher, int64_t t_stride, int t_dtype, const int64_t *labels,
                   const uint8_t *correlated, int rule, int64_t k, double mass_p, double temperature,
                   int standardize, uint8_t *mask_out, int64_t *size_out, int threads, int flags, int64_t *bad_row) {
    call_t cl = {.n = n, .c = c, .t = teacher, .s = teacher, .t_stride = t_stride, .s_stride = t_stride,
                 .t_dtype = t_dtype, .s_dtype = t_dtype, .labels = labels, .correlated = correlated,
                 .rule = rule, .k = k, .mass_p = mass_p, .temp = temperature, .standardize = standardize,
                 .mask_out = mask_out, .size_out = size_out,
                 .mask_only = 1, .simd = simd_level(flags)};
    return run(&cl, 1, threads, bad_row);
}

/* One pass over an (n, c) array of logits, as pass 1 reads them: each row's argmax (lowest index among
   equal maxima, as the decomposition's teacher_pred) into pred (n,), and ERR_NONFINITE with *bad_row the
   lowest row holding a NaN or an infinity (its pred is -1; the other rows are scanned). */
int dk_scan(int64_t n, int64_t c, const void *data, int64_t stride, int dtype, int64_t *pred, int threads, int flags,
            int64_t *bad_row) {
    call_t cl = {.n = n, .c = c, .t = data, .s = data, .t_stride = stride, .s_stride = stride, .t_dtype = dtype,
                 .s_dtype = dtype, .rule = RULE_TOPK, .k = 1, .temp = 1.0, .scan_out = pred,
                 .simd = simd_level(flags)};
    return run(&cl, 1, threads, bad_row);
}
