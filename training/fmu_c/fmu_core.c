/* See fmu_core.h. No allocation and no global state: everything lives in the caller's SmCore. */
#include <stdlib.h>
#include <string.h>

#include "fmu_core.h"

void sm_reset(SmCore *core, int model_exchange)
{
    memset(core, 0, sizeof *core);
    for (int i = 0; i < SM_N_INPUTS; ++i)
        core->x[i] = sm_start[i];
    core->model_exchange = model_exchange;
    core->mode = SM_INSTANTIATED;
    core->in_domain = sm_inside(core);
}

static int is_input(unsigned vr)
{
    return vr >= SM_VR_INPUT && vr < SM_VR_INPUT + SM_N_INPUTS;
}

int sm_set_real(SmCore *core, unsigned vr, double value)
{
    if (!is_input(vr))
        return -1;
    core->x[vr - SM_VR_INPUT] = value;
    core->fresh = 0;
    return 0;
}

static void refresh(SmCore *core)
{
    if (!core->fresh) {
        sm_evaluate(core->x, NULL, core->values, NULL);
        core->fresh = 1;
    }
}

static double margin(const double *x, unsigned index)
{
    unsigned input = index / 2;
    return index % 2 ? sm_max[input] - x[input] : x[input] - sm_min[input];
}

int sm_get_real(SmCore *core, unsigned vr, double *value)
{
    if (vr == SM_VR_TIME) {
        *value = core->time;
    } else if (is_input(vr)) {
        *value = core->x[vr - SM_VR_INPUT];
    } else if (vr >= SM_VR_VALUE && vr < SM_VR_VALUE + SM_N_VALUES) {
        refresh(core);
        *value = core->values[vr - SM_VR_VALUE];
    } else if (vr >= SM_VR_MARGIN && vr < SM_VR_END) {
        *value = margin(core->x, vr - SM_VR_MARGIN);
    } else {
        return -1;
    }
    return 0;
}

int sm_inside(const SmCore *core)
{
    for (int i = 0; i < SM_N_INPUTS; ++i)
        if (!(core->x[i] >= sm_min[i] && core->x[i] <= sm_max[i]))
            return 0; /* NaN is outside */
    return 1;
}

static void decided(SmCore *core)
{
    memcpy(core->decided_x, core->x, sizeof core->x);
    core->decided = 1;
}

int sm_update_discrete(SmCore *core)
{
    int now = sm_inside(core), changed = now != core->in_domain;
    core->in_domain = now;
    decided(core);
    return changed;
}

/* Within this share of its range an input is on a bound: where an integrator's root finding
 * puts it at an event. */
#define ON_BOUND 1e-9

void sm_event_update(SmCore *core)
{
    int outside = 0, on_bound = 0;
    if (core->decided && memcmp(core->decided_x, core->x, sizeof core->x) == 0)
        return; /* decided at these inputs already (an event iteration, initialization) */
    for (int i = 0; i < SM_N_INPUTS; ++i) {
        double tolerance = ON_BOUND * (sm_max[i] - sm_min[i]);
        double below = core->x[i] - sm_min[i], above = sm_max[i] - core->x[i];
        if (!(below >= -tolerance && above >= -tolerance))
            outside = 1; /* NaN too */
        else if (below <= tolerance || above <= tolerance)
            on_bound = 1;
    }
    /* An event with an input on its bound is that input crossing it: the unit was on one side
     * and is now on the other (leaving if it was inside, entering if nothing else is out). */
    core->in_domain = outside ? 0 : on_bound ? !core->in_domain : 1;
    decided(core);
}

int sm_get_boolean(SmCore *core, unsigned vr, int *value)
{
    if (vr != SM_VR_IN_DOMAIN)
        return -1;
    /* A discrete output of model exchange changes at events only (and is set up in
     * initialization); in co-simulation it follows the inputs as they are set. */
    if (!core->model_exchange || core->mode == SM_INSTANTIATED ||
        core->mode == SM_INITIALIZATION)
        sm_update_discrete(core);
    *value = core->in_domain;
    return 0;
}

void sm_event_indicators(const SmCore *core, double *indicators)
{
    for (unsigned k = 0; k < SM_N_INDICATORS; ++k)
        indicators[k] = margin(core->x, k);
}

/* The tangent of every real variable along the input direction dx (into d, by index from
 * SM_VR_VALUE; margins after the values). */
static void tangent(const SmCore *core, const double *dx, double *d_values, double *d_margins)
{
    double values[SM_N_VALUES];
    sm_evaluate(core->x, dx, values, d_values);
    for (unsigned k = 0; k < SM_N_INDICATORS; ++k)
        d_margins[k] = k % 2 ? -dx[k / 2] : dx[k / 2];
}

static int pick(unsigned vr, const double *dx, const double *d_values, const double *d_margins,
                double *value)
{
    if (vr >= SM_VR_VALUE && vr < SM_VR_VALUE + SM_N_VALUES)
        *value = d_values[vr - SM_VR_VALUE];
    else if (vr >= SM_VR_MARGIN && vr < SM_VR_END)
        *value = d_margins[vr - SM_VR_MARGIN];
    else if (is_input(vr))
        *value = dx[vr - SM_VR_INPUT];
    else
        return -1;
    return 0;
}

int sm_directional(SmCore *core, const unsigned *unknown, size_t n_unknown,
                   const unsigned *known, size_t n_known, const double *seed, double *result)
{
    double dx[SM_N_INPUTS] = {0}, d_values[SM_N_VALUES], d_margins[SM_N_INDICATORS];
    for (size_t j = 0; j < n_known; ++j) {
        if (!is_input(known[j]))
            return -1;
        dx[known[j] - SM_VR_INPUT] += seed[j];
    }
    tangent(core, dx, d_values, d_margins);
    for (size_t i = 0; i < n_unknown; ++i)
        if (pick(unknown[i], dx, d_values, d_margins, &result[i]))
            return -1;
    return 0;
}

int sm_adjoint(SmCore *core, const unsigned *unknown, size_t n_unknown,
               const unsigned *known, size_t n_known, const double *seed, double *result)
{
    double dx[SM_N_INPUTS], d_values[SM_N_VALUES], d_margins[SM_N_INDICATORS];
    for (size_t j = 0; j < n_known; ++j) {
        if (!is_input(known[j]))
            return -1;
        memset(dx, 0, sizeof dx);
        dx[known[j] - SM_VR_INPUT] = 1.0;
        tangent(core, dx, d_values, d_margins);
        result[j] = 0.0;
        for (size_t i = 0; i < n_unknown; ++i) {
            double d;
            if (pick(unknown[i], dx, d_values, d_margins, &d))
                return -1;
            result[j] += seed[i] * d;
        }
    }
    return 0;
}

int sm_state_save(const SmCore *core, void **state)
{
    if (!*state)
        *state = calloc(1, sizeof(SmCore));
    if (!*state)
        return -1;
    memcpy(*state, core, sizeof *core);
    return 0;
}

int sm_state_restore(SmCore *core, const void *state)
{
    if (!state)
        return -1;
    memcpy(core, state, sizeof *core);
    return 0;
}

void sm_state_free(void **state)
{
    if (state) {
        free(*state);
        *state = NULL;
    }
}

/* Bytes are tagged with the model's token, so the bytes of another unit are refused. */
static const char tag[] = SM_TOKEN;

size_t sm_serialized_size(void)
{
    return sizeof tag + sizeof(SmCore);
}

void sm_serialize(const void *state, unsigned char *bytes)
{
    memcpy(bytes, tag, sizeof tag);
    memcpy(bytes + sizeof tag, state, sizeof(SmCore));
}

int sm_state_from_bytes(const unsigned char *bytes, size_t size, void **state)
{
    SmCore restored;
    if (size != sm_serialized_size() || memcmp(bytes, tag, sizeof tag) != 0)
        return -1;
    memcpy(&restored, bytes + sizeof tag, sizeof restored);
    return sm_state_save(&restored, state);
}
