/* Fused CPU kernel of the CAKD loss: strong-set mask, the three terms and their gradient, one call each.
 *
 * Built on first use by cakd_viz/native.py (for cakd_viz/losses/native_kernel.py) with the system C compiler (plain C99 + libm, no Python or
 * torch headers) and called through ctypes. Why: at a training batch (256 x 100) a loss made of tensor
 * ops costs what its op count costs (each dispatched op 10-30 us on a small CPU, whatever its size); this
 * does the whole forward in one pass over the logits and the backward in one more.
 *
 * Per row, with u = s / T (student), v = t / T (teacher), groups G in {S, W} (mask 1 = S):
 *   group maxima m_G of s and t; a_i = (s_i - m_G(s)) / T, b_i = (t_i - m_G(t)) / T  (<= 0)
 *   Zq_G = sum_G exp(a_i), Zp_G = sum_G exp(b_i) (each >= 1 for a non-empty group: no underflow)
 *   X_G = sum_G exp(b_i) (b_i - a_i)
 *   in-group KL K_G = KL(p^G || q^G) = X_G / Zp_G - log(Zp_G / Zq_G)
 *   log masses from the group log-sum-exps m_G / T + log Z_G; BCD = sum_G p_G log(p_G / q_G)
 * A single-class group gives Z = 1 and K = 0 exactly; student == teacher gives every term exactly 0.
 *
 * Backward, for the upstream coefficients cb, cs, cw (weight x upstream gradient x T / n):
 *   dL/ds_i = q^G_i cb (q_G - p_G) + c_G (q^G_i - p^G_i),  c_G = cs or cw (times p_G when "natural")
 * written so that both products vanish exactly where q = p and in single-class groups.
 *
 * All accumulation is in double; inputs and outputs are float32 or float64 (two instantiations).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* RULE_*: the grouping rules' codes, shared with the decomposition kernel. This kernel selects S itself
   for RULE_TARGET, RULE_TOPK and RULE_TOPK_TARGET; for any other rule the caller passes RULE_MASK and
   the strong set as a byte mask (cakd_viz.grouping's strong_mask), and the forward refuses any other code. */
#include "../grouping/rules.h"

#define ROW 8 /* per-row record: q_S, q_W, p_S, p_W, 1/Zq_S, 1/Zq_W, 1/Zp_S, 1/Zp_W */

/* exp for float32, written so that the compiler vectorises the loops that call it (libm's expf is a
   call, which no loop vectorises): x = n ln2 + r with |r| <= ln2 / 2, exp(r) by Cephes' degree-6
   polynomial (relative error about 1e-7, float32's own), times 2^n built in the exponent bits. x is
   floored at -87 (2^n stays a normal float): every group sum here is at least 1, so anything below
   exp(-87) = 1.6e-38 only ever adds nothing. exp(0) is exactly 1. */
static inline float exp_f32(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x; /* (never above 0 here: every argument is shifted by a maximum) */
    float y = x * 1.44269504088896341f;
    int32_t n = (int32_t)(y + (y < 0.0f ? -0.5f : 0.5f)); /* round to nearest */
    float fn = (float)n;
    float r = x - fn * 0.693359375f;                      /* Cody-Waite: ln2 in two parts */
    r = r - fn * -2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    union { int32_t i; float f; } scale = {.i = (n + 127) << 23};
    return p * scale.f;
}

/* exp in place over an array. With CAKD_MVEC (x86-64 with glibc's libmvec, which the build tries
   first), 8 or 4 lanes at a time through libmvec's vector expf (relative error about 2e-7). */
#if defined(CAKD_MVEC) && defined(__x86_64__)
#include <immintrin.h>
__m128 _ZGVbN4v_expf(__m128);
__m256 _ZGVdN8v_expf(__m256);
__attribute__((target("avx2"))) static int64_t exp8_f32(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _ZGVdN8v_expf(_mm256_loadu_ps(x + i)));
    return i;
}
static int cpu_avx2 = 0; /* set once by cakd_kernel_version(), which the loader calls first */
static void detect_cpu(void) { cpu_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0; }
static void vexp_f32(float *x, int64_t n) {
    int64_t i = cpu_avx2 ? exp8_f32(x, n) : 0;
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _ZGVbN4v_expf(_mm_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = exp_f32(x[i]);
}
#else
static void detect_cpu(void) {}
static void vexp_f32(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = exp_f32(x[i]);
}
#endif
static void vexp_f64(double *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = exp(x[i]);
}

/* Rows split over threads: each job takes a contiguous block of rows (the calling thread the first),
   and the forward adds the blocks' sums in row order, so a result depends on the thread count only
   through the order of that final sum. Below MIN_WORK elements per thread, fewer threads: right after
   torch's own parallel ops (a model's forward) its OpenMP workers still spin for a while, and a
   thread of ours started then competes with them; at 256 x 1000 that cost more than it saved. */
#define MAX_THREADS 16
#define MIN_WORK 262144

typedef struct job job_t;
struct job {
    int64_t n, c, k, r0, r1, bad_row;
    const void *s, *t;
    const int64_t *labels;
    uint8_t *mask;
    void *probs, *grad;
    double *rows;
    double inv_t, cb, cs, cw, sums[3];
    int rule, natural_s, natural_w, code;
    void (*run)(job_t *);
};

static int split_rows(const job_t *base, int threads, job_t *jobs) {
    int64_t work = base->n * base->c;
    int m = threads < 1 ? 1 : (threads > MAX_THREADS ? MAX_THREADS : threads);
    if ((int64_t)m > work / MIN_WORK) m = (int)(work / MIN_WORK);
    if ((int64_t)m > base->n) m = (int)base->n;
    if (m < 1) m = 1;
    for (int i = 0; i < m; i++) {
        jobs[i] = *base;
        jobs[i].r0 = base->n * i / m;
        jobs[i].r1 = base->n * (i + 1) / m;
        jobs[i].code = 0;
        jobs[i].bad_row = -1;
    }
    return m;
}

static void *job_main(void *p) {
    job_t *j = p;
    j->run(j);
    return NULL;
}

static void run_jobs(job_t *jobs, int m) {
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int i = 1; i < m; i++) started[i] = pthread_create(&tid[i], NULL, job_main, &jobs[i]) == 0;
    jobs[0].run(&jobs[0]);
    for (int i = 1; i < m; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            jobs[i].run(&jobs[i]); /* no thread to be had: do it here */
    }
}

/* torch.topk's order: NaN above everything. */
static int above(double x, double y) { return (isnan(x) && !isnan(y)) || x > y; }

static double logaddexp(double x, double y) {
    if (x == -INFINITY) return y;
    if (y == -INFINITY) return x;
    return x > y ? x + log1p(exp(y - x)) : y + log1p(exp(x - y));
}

/* Top-k of one row into mask (already zeroed), ties to the lower class index, by an insertion list
   sorted by value descending, index ascending. Without NaN, only the values at or above a cheap lower
   bound of the k-th largest are offered to the list (the k-th largest of the maxima of blocks of 8
   entries: k distinct entries reach it), so that its mispredicted branches stay few. A row holding a
   NaN goes through a list that puts NaN above everything, as torch.topk does. `val` holds at least
   k + 2 (c + 7) / 8 doubles. */
#define DEFINE_TOPK(NAME, REAL)                                                                        \
    static void NAME(int64_t c, const REAL *t, int64_t k, double *val, int64_t *idx, uint8_t *mask) {  \
        int nan = 0;                                                                                   \
        for (int64_t i = 0; i < c; i++) nan |= t[i] != t[i];                                           \
        int64_t filled = 0;                                                                            \
        if (!nan) {                                                                                    \
            REAL *v = (REAL *)val, *top = v + k, tau = (REAL)-INFINITY;                                \
            int64_t blocks = (c + 7) / 8;                                                              \
            if (k <= blocks) {                                                                         \
                /* block b = entries b, b + blocks, b + 2 blocks, ...: the maxima are independent      \
                   lanes (vectorised), not one long chain of comparisons */                             \
                REAL *bm = top + k;                                                                    \
                for (int64_t b = 0; b < blocks; b++) bm[b] = t[b];                                     \
                for (int64_t j = 1; j < 8; j++) {                                                      \
                    const REAL *tj = t + j * blocks;                                                   \
                    int64_t lanes = c - j * blocks < blocks ? c - j * blocks : blocks;                 \
                    for (int64_t b = 0; b < lanes; b++) bm[b] = tj[b] > bm[b] ? tj[b] : bm[b];         \
                }                                                                                      \
                int64_t kept = 0;                                                                      \
                for (int64_t b = 0; b < blocks; b++) {                                                 \
                    REAL m = bm[b];                                                                    \
                    if (kept == k && !(m > top[k - 1])) continue;                                      \
                    int64_t j = kept < k ? kept++ : k - 1;                                             \
                    while (j > 0 && m > top[j - 1]) {                                                  \
                        top[j] = top[j - 1];                                                           \
                        j--;                                                                           \
                    }                                                                                  \
                    top[j] = m;                                                                        \
                }                                                                                      \
                tau = top[k - 1];                                                                      \
            }                                                                                          \
            REAL worst = (REAL)-INFINITY; /* the k-th largest so far, once the list is full */        \
            for (int64_t i = 0; i < c; i++) {                                                          \
                REAL x = t[i];                                                                         \
                if (x < tau || (filled == k && !(x > worst))) continue;                                \
                int64_t j = filled < k ? filled++ : k - 1;                                             \
                while (j > 0 && x > v[j - 1]) {                                                        \
                    v[j] = v[j - 1];                                                                   \
                    idx[j] = idx[j - 1];                                                               \
                    j--;                                                                               \
                }                                                                                      \
                v[j] = x;                                                                              \
                idx[j] = i;                                                                            \
                worst = v[k - 1];                                                                      \
            }                                                                                          \
        } else {                                                                                       \
            for (int64_t i = 0; i < c; i++) {                                                          \
                double x = (double)t[i];                                                               \
                if (filled == k && !above(x, val[k - 1])) continue;                                    \
                int64_t j = filled < k ? filled++ : k - 1;                                             \
                while (j > 0 && above(x, val[j - 1])) {                                                \
                    val[j] = val[j - 1];                                                               \
                    idx[j] = idx[j - 1];                                                               \
                    j--;                                                                               \
                }                                                                                      \
                val[j] = x;                                                                            \
                idx[j] = i;                                                                            \
            }                                                                                          \
        }                                                                                              \
        for (int64_t j = 0; j < filled; j++) mask[idx[j]] = 1;                                         \
    }

/* Forward. Returns 0, or -1 for a label out of range (row in *bad_row), -2 when out of memory, -3 for a
   rule this kernel does not select (see RULE_* above).
   probs: (2, n, c) exp(a_i), exp(b_i), the in-group distributions q^G, p^G times Zq_G, Zp_G;
   rows: (n, ROW), see ROW; sums: (3,) batch sums of the BCD, SCD, WCD of every row (SCD, WCD times
   p_S, p_W where natural_s, natural_w). */
#define DEFINE_FORWARD(NAME, TOPK, REAL, EXP)                                                          \
    static int NAME##_rows(int64_t n, int64_t c, const REAL *s, const REAL *t, double inv_t, int rule, \
                           int64_t k, const int64_t *labels, uint8_t *mask, REAL *probs, double *rows, \
                           double *sums, int natural_s, int natural_w, int64_t *bad_row, int64_t r0,   \
                           int64_t r1) {                                                               \
        double *val = NULL;                                                                            \
        int64_t *idx = NULL;                                                                           \
        if (rule == RULE_TOPK || rule == RULE_TOPK_TARGET) {                                           \
            val = malloc(sizeof(double) * (size_t)(k + 2 * ((c + 7) / 8)));                                  \
            idx = malloc(sizeof(int64_t) * (size_t)k);                                                 \
            if (!val || !idx) {                                                                        \
                free(val);                                                                             \
                free(idx);                                                                             \
                return -2;                                                                             \
            }                                                                                          \
        }                                                                                              \
        double total[3] = {0.0, 0.0, 0.0};                                                             \
        for (int64_t r = r0; r < r1; r++) {                                                            \
            const REAL *sr = s + r * c, *tr = t + r * c;                                               \
            uint8_t *mr = mask + r * c;                                                                \
            REAL *qr = probs + r * c, *pr = probs + (n + r) * c;                                       \
            if (rule != RULE_MASK) memset(mr, 0, (size_t)c);                                           \
            if (rule == RULE_TOPK || rule == RULE_TOPK_TARGET) TOPK(c, tr, k, val, idx, mr);           \
            if (rule == RULE_TARGET || rule == RULE_TOPK_TARGET) {                                     \
                if (labels[r] < 0 || labels[r] >= c) {                                                 \
                    free(val);                                                                         \
                    free(idx);                                                                         \
                    *bad_row = r;                                                                      \
                    return -1;                                                                         \
                }                                                                                      \
                mr[labels[r]] = 1;                                                                     \
            }                                                                                          \
            /* Scalars per group, not arrays indexed by the group (an indexed accumulator in memory    \
               makes every element wait for the previous one's store), and branch-free bodies that    \
               the compiler vectorises. */                                                          \
            REAL ms0 = -INFINITY, ms1 = -INFINITY, mt0 = -INFINITY, mt1 = -INFINITY;                   \
            int64_t size0 = 0;                                                                         \
            for (int64_t i = 0; i < c; i++) {                                                          \
                int strong = mr[i] != 0;                                                               \
                REAL xs = strong ? sr[i] : -INFINITY, xw = strong ? -INFINITY : sr[i];                 \
                REAL ys = strong ? tr[i] : -INFINITY, yw = strong ? -INFINITY : tr[i];                 \
                size0 += strong;                                                                       \
                ms0 = xs > ms0 ? xs : ms0;                                                             \
                ms1 = xw > ms1 ? xw : ms1;                                                             \
                mt0 = ys > mt0 ? ys : mt0;                                                             \
                mt1 = yw > mt1 ? yw : mt1;                                                             \
            }                                                                                          \
            double ms[2] = {ms0, ms1}, mt[2] = {mt0, mt1};                                             \
            int64_t size[2] = {size0, c - size0};                                                      \
            const REAL scale = (REAL)inv_t;                                                            \
            for (int64_t i = 0; i < c; i++) {                                                          \
                int strong = mr[i] != 0;                                                               \
                REAL a = (sr[i] - (strong ? ms0 : ms1)) * scale;                                       \
                REAL b = (tr[i] - (strong ? mt0 : mt1)) * scale;                                       \
                qr[i] = a < (REAL)-87 ? (REAL)-87 : a; /* floored: see exp_f32 */                      \
                pr[i] = b < (REAL)-87 ? (REAL)-87 : b;                                                 \
            }                                                                                          \
            EXP(qr, c);                                                                                \
            EXP(pr, c);                                                                                \
            double zq0 = 0.0, zq1 = 0.0, zp0 = 0.0, zp1 = 0.0, x0 = 0.0, x1 = 0.0;                     \
            for (int64_t i = 0; i < c; i++) {                                                          \
                REAL strong = mr[i] != 0 ? (REAL)1 : (REAL)0;                                          \
                REAL a = (sr[i] - (strong != 0 ? ms0 : ms1)) * scale;                                  \
                REAL b = (tr[i] - (strong != 0 ? mt0 : mt1)) * scale;                                  \
                double m = (double)strong, ea = (double)qr[i], eb = (double)pr[i];                     \
                double d = eb * (double)(b - a);                                                       \
                zq0 += m * ea;                                                                         \
                zq1 += ea - m * ea;                                                                    \
                zp0 += m * eb;                                                                         \
                zp1 += eb - m * eb;                                                                    \
                x0 += m * d;                                                                           \
                x1 += d - m * d;                                                                       \
            }                                                                                          \
            double zq[2] = {zq0, zq1}, zp[2] = {zp0, zp1}, x[2] = {x0, x1};                            \
            double lq[2], lp[2], inner[2] = {0.0, 0.0};                                                \
            for (int g = 0; g < 2; g++) {                                                              \
                lq[g] = size[g] ? ms[g] * inv_t + log(zq[g]) : -INFINITY;                              \
                lp[g] = size[g] ? mt[g] * inv_t + log(zp[g]) : -INFINITY;                              \
                if (size[g] > 1) inner[g] = x[g] / zp[g] - log(zp[g] / zq[g]);                         \
            }                                                                                          \
            double lq_all = logaddexp(lq[0], lq[1]), lp_all = logaddexp(lp[0], lp[1]);                 \
            double bcd = 0.0, mq[2], mp[2];                                                            \
            for (int g = 0; g < 2; g++) {                                                              \
                mq[g] = size[g] ? exp(lq[g] - lq_all) : 0.0;                                           \
                mp[g] = size[g] ? exp(lp[g] - lp_all) : 0.0;                                           \
                if (size[g] && mp[g] > 0.0) bcd += mp[g] * ((lp[g] - lp_all) - (lq[g] - lq_all));      \
            }                                                                                          \
            double *row = rows + ROW * r;                                                              \
            row[0] = mq[0];                                                                            \
            row[1] = mq[1];                                                                            \
            row[2] = mp[0];                                                                            \
            row[3] = mp[1];                                                                            \
            for (int g = 0; g < 2; g++) {                                                              \
                row[4 + g] = size[g] ? 1.0 / zq[g] : 0.0;                                              \
                row[6 + g] = size[g] ? 1.0 / zp[g] : 0.0;                                              \
            }                                                                                          \
            total[0] += bcd;                                                                           \
            total[1] += natural_s ? mp[0] * inner[0] : inner[0];                                       \
            total[2] += natural_w ? mp[1] * inner[1] : inner[1];                                       \
        }                                                                                              \
        free(val);                                                                                     \
        free(idx);                                                                                     \
        sums[0] = total[0];                                                                            \
        sums[1] = total[1];                                                                            \
        sums[2] = total[2];                                                                            \
        return 0;                                                                                      \
    }                                                                                                  \
    static void NAME##_job(job_t *j) {                                                                 \
        j->code = NAME##_rows(j->n, j->c, j->s, j->t, j->inv_t, j->rule, j->k, j->labels, j->mask,     \
                              j->probs, j->rows, j->sums, j->natural_s, j->natural_w, &j->bad_row,     \
                              j->r0, j->r1);                                                           \
    }                                                                                                  \
    int NAME(int64_t n, int64_t c, const REAL *s, const REAL *t, double inv_t, int rule, int64_t k,   \
             const int64_t *labels, uint8_t *mask, REAL *probs, double *rows, double *sums,           \
             int natural_s, int natural_w, int64_t *bad_row, int threads) {                           \
        job_t jobs[MAX_THREADS];                                                                       \
        if (rule != RULE_MASK && rule != RULE_TARGET && rule != RULE_TOPK && rule != RULE_TOPK_TARGET) \
            return -3;                                                                                 \
        job_t base = {.n = n, .c = c, .s = s, .t = t, .inv_t = inv_t, .rule = rule, .k = k,            \
                      .labels = labels, .mask = mask, .probs = probs, .rows = rows,                    \
                      .natural_s = natural_s, .natural_w = natural_w, .run = NAME##_job};              \
        int m = split_rows(&base, threads, jobs);                                                      \
        run_jobs(jobs, m);                                                                             \
        sums[0] = sums[1] = sums[2] = 0.0;                                                             \
        for (int i = 0; i < m; i++) { /* in row order: the first error is the lowest row's */          \
            if (jobs[i].code != 0) {                                                                   \
                *bad_row = jobs[i].bad_row;                                                            \
                return jobs[i].code;                                                                   \
            }                                                                                          \
            for (int q = 0; q < 3; q++) sums[q] += jobs[i].sums[q];                                    \
        }                                                                                              \
        return 0;                                                                                      \
    }

/* Backward: grad (n, c) of the weighted loss with respect to the student logits. */
#define DEFINE_BACKWARD(NAME, REAL)                                                                    \
    static void NAME##_rows(int64_t n, int64_t c, const REAL *probs, const uint8_t *mask,             \
                            const double *rows, double cb, double cs, double cw, int natural_s,       \
                            int natural_w, REAL *grad, int64_t r0, int64_t r1) {                      \
        for (int64_t r = r0; r < r1; r++) {                                                            \
            const REAL *qr = probs + r * c, *pr = probs + (n + r) * c;                                 \
            const uint8_t *mr = mask + r * c;                                                          \
            const double *row = rows + ROW * r;                                                        \
            double bin[2] = {cb * (row[0] - row[2]), cb * (row[1] - row[3])};                          \
            double cg[2] = {natural_s ? cs * row[2] : cs, natural_w ? cw * row[3] : cw};               \
            REAL *gr = grad + r * c;                                                                   \
            for (int64_t i = 0; i < c; i++) {                                                          \
                int g = mr[i] ? 0 : 1;                                                                 \
                double q = (double)qr[i] * row[4 + g], p = (double)pr[i] * row[6 + g];                 \
                gr[i] = (REAL)(q * bin[g] + cg[g] * (q - p));                                          \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
    static void NAME##_job(job_t *j) {                                                                 \
        NAME##_rows(j->n, j->c, j->probs, j->mask, j->rows, j->cb, j->cs, j->cw, j->natural_s,         \
                    j->natural_w, j->grad, j->r0, j->r1);                                              \
    }                                                                                                  \
    void NAME(int64_t n, int64_t c, const REAL *probs, const uint8_t *mask, const double *rows,       \
              double cb, double cs, double cw, int natural_s, int natural_w, REAL *grad, int threads) { \
        job_t jobs[MAX_THREADS];                                                                       \
        job_t base = {.n = n, .c = c, .probs = (void *)probs, .mask = (uint8_t *)mask,                 \
                      .rows = (double *)rows, .cb = cb, .cs = cs, .cw = cw, .natural_s = natural_s,    \
                      .natural_w = natural_w, .grad = grad, .run = NAME##_job};                        \
        run_jobs(jobs, split_rows(&base, threads, jobs));                                              \
    }

DEFINE_TOPK(topk_f32, float)
DEFINE_TOPK(topk_f64, double)
DEFINE_FORWARD(cakd_forward_f32, topk_f32, float, vexp_f32)
DEFINE_FORWARD(cakd_forward_f64, topk_f64, double, vexp_f64)
DEFINE_BACKWARD(cakd_backward_f32, float)
DEFINE_BACKWARD(cakd_backward_f64, double)

/* The ABI version cakd_viz/native.py checks before using a cached build (it calls this first). */
int cakd_kernel_version(void) {
    detect_cpu();
    return 4;
}
