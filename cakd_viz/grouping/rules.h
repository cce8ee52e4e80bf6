/* rules.h -- the grouping rules' codes, shared by both C kernels (docs/architecture.md §4).
 *
 * Included by cakd_viz/decomposition/decompose_kernel.c and cakd_viz/losses/cakd_kernel.c. On the
 * Python side each rule object of cakd_viz/grouping/ states its code (`Grouping.code`) and which kernels
 * select its strong set themselves (`Grouping.kernels`); tests/test_grouping_registry.py checks that
 * the two agree. A rule with no code (RULE_MASK) never reaches the decomposition kernel: `decompose`
 * computes it with its float64 tensor path; the loss kernel then takes the strong set as a byte mask.
 *
 * cakd_viz/native.py hashes this header with each kernel's source: changing a code rebuilds both.
 */
#ifndef CAKD_VIZ_GROUPING_RULES_H
#define CAKD_VIZ_GROUPING_RULES_H

#define RULE_MASK 0        /* no code: the caller passes the strong set as a mask (loss kernel only) */
#define RULE_TARGET 1      /* {label}                                        both kernels */
#define RULE_TOPK 2        /* teacher top-k, ties to the lower class index   both kernels */
#define RULE_TOPK_TARGET 3 /* teacher top-k plus the label                   both kernels */
#define RULE_MASS 4        /* fewest teacher-top classes reaching mass P     decomposition kernel */
#define RULE_CORR 5        /* prediction plus its correlated classes         decomposition kernel */

#endif
