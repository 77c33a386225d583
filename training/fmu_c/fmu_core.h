/*
 * The part of a surrogate FMU that FMI 2 and FMI 3 share: one instance's inputs, its outputs
 * evaluated on demand, the training-range check and the exact directional derivatives.
 * Written for `surrogate export --format fmu`; the network itself is in surrogate_model.c.
 *
 * Value references, the same in both versions:
 *   0                         time (the independent variable)
 *   SM_VR_INPUT + i           input i
 *   SM_VR_VALUE + k           output k, then (ensembles) the std of output k
 *   SM_VR_IN_DOMAIN           Boolean: every input inside its training range
 *   SM_VR_MARGIN + 2 i (+ 1)  input i minus its minimum (its maximum minus input i): the event
 *                             indicators of model exchange, negative outside the range
 */
#ifndef SURROGATE_FMU_CORE_H
#define SURROGATE_FMU_CORE_H

#include <stddef.h>

#include "surrogate_model.h"

#if defined(_WIN32)
#define SM_EXPORT __declspec(dllexport)
#elif defined(__GNUC__)
#define SM_EXPORT __attribute__((visibility("default")))
#else
#define SM_EXPORT
#endif

#define SM_VR_TIME 0u
#define SM_VR_INPUT 1u
#define SM_VR_VALUE (SM_VR_INPUT + SM_N_INPUTS)
#define SM_VR_IN_DOMAIN (SM_VR_VALUE + SM_N_VALUES)
#define SM_VR_MARGIN (SM_VR_IN_DOMAIN + 1u)
#define SM_N_INDICATORS (2 * SM_N_INPUTS)
#define SM_VR_END (SM_VR_MARGIN + SM_N_INDICATORS)

typedef enum { SM_INSTANTIATED, SM_INITIALIZATION, SM_EVENT, SM_CONTINUOUS, SM_STEP,
               SM_TERMINATED } SmMode;

/* Plain data: an FMU state is a copy of it. */
typedef struct {
    double time;
    double x[SM_N_INPUTS];
    double values[SM_N_VALUES]; /* valid when fresh */
    int fresh;
    int in_domain;              /* as last updated (model exchange: at events only) */
    double decided_x[SM_N_INPUTS]; /* the inputs in_domain was last updated at */
    int decided;
    int model_exchange;
    SmMode mode;
} SmCore;

void sm_reset(SmCore *core, int model_exchange);
/* 0 on success, -1 for a value reference that is not a settable input. */
int sm_set_real(SmCore *core, unsigned vr, double value);
/* 0 on success, -1 for a value reference that is not a real variable. */
int sm_get_real(SmCore *core, unsigned vr, double *value);
/* 0 on success, -1 for a value reference that is not the Boolean in_domain. */
int sm_get_boolean(SmCore *core, unsigned vr, int *value);
int sm_inside(const SmCore *core);
/* Update the discrete output (in_domain) from the inputs, bounds inclusive; 1 if it changed. */
int sm_update_discrete(SmCore *core);
/* The same at an event of model exchange, where an input on a bound is crossing it. */
void sm_event_update(SmCore *core);
void sm_event_indicators(const SmCore *core, double *indicators);
/* d unknown = J d known, for real unknowns (outputs, std, margins) and known inputs; 0 or -1. */
int sm_directional(SmCore *core, const unsigned *unknown, size_t n_unknown,
                   const unsigned *known, size_t n_known, const double *seed, double *result);
/* result_j = sum_i seed_i d unknown_i / d known_j; 0 or -1. */
int sm_adjoint(SmCore *core, const unsigned *unknown, size_t n_unknown,
               const unsigned *known, size_t n_known, const double *seed, double *result);
/* FMU states: a copy of the core, allocated when *state is NULL (0, or -1 out of memory),
 * restored (-1: no state), freed, and as bytes: the size, the copy out, and a state read back
 * (-1 for bytes of another unit, or out of memory). */
int sm_state_save(const SmCore *core, void **state);
int sm_state_restore(SmCore *core, const void *state);
void sm_state_free(void **state);
size_t sm_serialized_size(void);
void sm_serialize(const void *state, unsigned char *bytes);
int sm_state_from_bytes(const unsigned char *bytes, size_t size, void **state);

#endif
