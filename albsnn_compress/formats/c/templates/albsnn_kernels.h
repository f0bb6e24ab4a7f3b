/* albsnn_kernels.h: the layer kernels every exported model shares (internal: applications include albsnn_model.h).
 *
 * Written by albsnn-compress. Plain C99, no allocation, no library calls; usable from C++ (extern "C").
 *
 * A tensor between two layers is either float32 values, [steps][c*h*w], or bit planes of
 * unsigned counts, [steps][planes][words], one plane per bit of the count, words = ceil(c*h*w / 32);
 * element i of a plane is bit 31 - i % 32 of word i / 32 (most significant bit first, the order of
 * the packed weights), and the padding bits of the last word are zero. A spike map is one plane;
 * an average pool of spikes is a count of spikes with a divisor (the window size). Its value is
 * count / divisor. steps is 1 before the first neuron layer (the image is the same at every
 * time step), else ALBSNN_TIMESTEPS.
 *
 * Between an event-driven kernel and the next one (or a pooling between them) bit planes can instead be
 * pixel-major rows (pixel_major = 1), the layout those kernels read: uint64_t words, [steps][h][planes][R]
 * with R = ceil((w + 2 pad) * c / 64) + 1, element (channel ch, row iy, column ix) at bit
 * ((ix + pad) * c + ch) % 64, least significant first, of word ((ix + pad) * c + ch) / 64 of its row. The
 * pad zero pixels on each side of a row are the padding of the conv that reads it; they, the bits past the
 * row and the spare last word are zero. A pixel's channels are side by side: a conv reads its receptive
 * field without gathering it, writes each output pixel's spikes as one run of bits, and a pooling adds whole
 * pixels.
 *
 * Types: float values are read and written as float, bit planes as uint32_t, the 1-bit kernels'
 * receptive fields, pixel-major bit rows and bit-sliced counters as uint64_t and their counts and
 * sums as int32_t, each through a pointer of that type to storage of that type (the model's arena is
 * a union of one array per type) and aligned for it. A kernel whose buffer is either values or bit planes takes
 * `void *` and converts it back to the type its tensor descriptor names, so the caller passes a float * for
 * values, a uint32_t * for channel-major bit planes and a uint64_t * for pixel-major rows.
 *
 * Layers over bit planes have two kernels each, with the same results bit for bit: dense ones that
 * visit every input (albsnn_conv_rows, albsnn_conv_bits, albsnn_conv_code_rows) and event-driven ones that
 * visit only the non-zero inputs (albsnn_conv_events, albsnn_conv_bit_events, albsnn_conv_code_events); the
 * exporter picks one per layer.
 *
 * Every kernel returns a status: ALBSNN_OK (0), or a negative ALBSNN_ERR_* code, before it writes
 * anything, when a pointer is NULL, a scratch buffer is smaller than its albsnn_*_scratch size, or
 * a descriptor is inconsistent.
 */
#ifndef ALBSNN_KERNELS_H
#define ALBSNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes, the same values as in albsnn_model.h (identical definitions may repeat). */
#define ALBSNN_OK 0
#define ALBSNN_ERR_NULL (-1)       /* a required pointer is NULL */
#define ALBSNN_ERR_SCRATCH (-2)    /* a scratch buffer is smaller than the kernel needs */
#define ALBSNN_ERR_DESCRIPTOR (-3) /* inconsistent shapes or parameters, or an unknown neuron rule */

/* The reset rules (albsnn_lif.reset), one case each in lif_reset of albsnn_kernels.c. */
#define ALBSNN_RESET_HARD 0u          /* spike ? v_reset : h */
#define ALBSNN_RESET_SOFT 1u          /* spike ? h - v_threshold : h */
#define ALBSNN_RESET_SOFT_DEFERRED 2u /* h; the next step's charged h - v_threshold if this step spiked (snnTorch) */
#define ALBSNN_RESET_NONE 3u          /* h */
#define ALBSNN_RESET_RULES 4u         /* how many there are */

/* The charge rules (albsnn_lif.charge), one case each in lif_charge of albsnn_kernels.c: H from the membrane V
 * and the input X (at step 0, V = v_reset). */
#define ALBSNN_CHARGE_DECAY_INPUT 0u /* V + (X - (V - v_reset)) / tau: leak, the input decays too (SpikingJelly) */
#define ALBSNN_CHARGE_DECAY 1u       /* V - (V - v_reset) / tau + X: leak, the input added as it is (snnTorch) */
#define ALBSNN_CHARGE_IF 2u          /* V + X: no leak (integrate-and-fire) */
#define ALBSNN_CHARGE_RULES 3u       /* how many there are */

typedef struct {
    uint32_t c, h, w;      /* channels, height and width of one step; features are c x 1 x 1 */
    uint32_t steps;        /* 1 (shared by every time step) or ALBSNN_TIMESTEPS */
    uint32_t planes;       /* 0: float32 values; n >= 1: n bit planes of counts */
    uint32_t divisor;      /* value = count / divisor (bit planes) */
    uint32_t pixel_major;  /* bit planes: 0 channel-major (uint32_t words), 1 pixel-major rows (uint64_t words) */
    uint32_t pad;          /* pixel-major: zero pixels on each side of a row; else 0 */
} albsnn_tensor;

/* A neuron layer's constants. tau and v_threshold hold for every channel unless taus / thresholds give one
 * value per channel (a channel is a map's channel, or a feature of a flat tensor). */
typedef struct {
    float tau, v_threshold, v_reset;
    float inv_tau;            /* 1 / tau when tau is a power of two (then x * inv_tau == x / tau), else 0: divide */
    uint32_t charge;          /* the charge rule: ALBSNN_CHARGE_* */
    uint32_t reset;           /* the reset rule: ALBSNN_RESET_* */
    uint32_t strict;          /* 1: fire on h > v_threshold (snnTorch); 0: on h >= v_threshold */
    uint32_t trace_id;        /* the neuron layer's index, for ALBSNN_TRACE */
    const float *taus;        /* per channel: tau, or NULL (tau for every channel) */
    const float *inv_taus;    /* per channel: as inv_tau, for taus (NULL exactly when taus is) */
    const float *thresholds;  /* per channel: v_threshold, or NULL (v_threshold for every channel) */
} albsnn_lif;

/* A conv or linear layer. Its weights are in the order its kernel reads them:
 *   albsnn_conv_rows, albsnn_conv_bits: [out c][in c / groups][k][k], as PyTorch and the .albsnn container;
 *   albsnn_conv_events, albsnn_conv_bit_events (pixel-major): [group][ky][kx][in c / groups][out c / groups]. */
typedef struct {
    albsnn_tensor in, out;
    uint32_t kernel, stride, padding, groups;
    const uint8_t *bits;     /* binarized: sign bits, 1 = +1, or NULL. albsnn_conv_rows, albsnn_conv_bits: MSB
                                first, the container's bytes; albsnn_conv_bit_events: per (group, ky, kx, c),
                                ceil(out c / groups / 64) 64-bit lane masks of 8 bytes, least significant byte
                                first, bit l of mask q for output channel 64 q + l of the group */
    const float *weight;     /* float weights, or NULL */
    const float *scale;      /* per output channel: y = acc * scale + bias (alpha, batch norm, bias folded) */
    const float *bias;
    const albsnn_lif *lif;   /* neurons fused after the affine (out is a spike map), or NULL (out is float) */
    const int32_t *fires;    /* one time step: neuron co fires iff fires[2co] <= acc <= fires[2co+1], the affine and
                                the neuron folded into a range at export: of the integer acc (1-bit weights over bit
                                planes), or of the float acc's order key (the float's bits as a signed integer, the
                                magnitude bits of a negative float flipped); or NULL */
} albsnn_conv;

/* A conv or linear layer of k-bit weights (k = 2, 4, 8): integer codes q in [-Q, Q], Q = 2^(k-1) - 1, and the weight
 * q * scale[co] (the code scale, with the batch norm after the layer and, over count planes, 1 / divisor folded in).
 * conv.bits and conv.weight are NULL. The codes are k-bit two's complement fields, least significant first, in the
 * order its kernel reads them:
 *   albsnn_conv_code_rows: [out c][in c / groups][k][k] packed as one run (the .albsnn container's and the ONNX
 *     export's bytes), code i in bits (i k) % 8 .. (i k) % 8 + k - 1 of byte i k / 8;
 *   albsnn_conv_code_events (pixel-major): [group][ky][kx][in c / groups], each tap's row of out c / groups codes
 *     packed the same way from a byte of its own (ceil(out c / groups * k / 8) bytes, the bits past the row zero). */
typedef struct {
    albsnn_conv conv;
    const uint8_t *codes;
    uint32_t code_bits; /* k: 2, 4 or 8 */
} albsnn_code_conv;

typedef struct {
    albsnn_tensor in, out;
    uint32_t kernel, stride;
    uint32_t is_max;         /* 0: average, 1: maximum */
} albsnn_pool;

/* Scratch sizes: how many elements of its type each scratch buffer of a kernel needs for descriptor
 * p; 0 when p is NULL or inconsistent (the kernel then returns an error). */
size_t albsnn_conv_rows_scratch(const albsnn_conv *p);        /* floats: albsnn_conv_rows */
size_t albsnn_conv_bits_scratch_words(const albsnn_conv *p);  /* uint64_t: albsnn_conv_bits' words */
size_t albsnn_conv_bits_scratch_counts(const albsnn_conv *p); /* int32_t: albsnn_conv_bits' counts */
size_t albsnn_conv_events_scratch_words(const albsnn_conv *p);  /* uint64_t: albsnn_conv_events' bit rows */
size_t albsnn_conv_events_scratch_floats(const albsnn_conv *p); /* floats: albsnn_conv_events' sums */
size_t albsnn_conv_bit_events_scratch_words(const albsnn_conv *p);  /* uint64_t: albsnn_conv_bit_events' counters */
size_t albsnn_conv_bit_events_scratch_counts(const albsnn_conv *p); /* int32_t: albsnn_conv_bit_events' sums */
size_t albsnn_conv_code_rows_scratch(const albsnn_code_conv *p);          /* floats: albsnn_conv_code_rows */
size_t albsnn_conv_code_events_scratch_words(const albsnn_code_conv *p);  /* uint64_t: albsnn_conv_code_events' bit rows */
size_t albsnn_conv_code_events_scratch_counts(const albsnn_code_conv *p); /* int32_t: albsnn_conv_code_events' sums */

int albsnn_normalize(const float *pixels, const float *mean, const float *std, const albsnn_tensor *out, float *y);
int albsnn_conv_bits(const albsnn_conv *p, const uint32_t *x, void *y, uint64_t *words, size_t n_words, int32_t *counts,
                     size_t n_counts);
int albsnn_conv_rows(const albsnn_conv *p, const void *x, void *y, float *scratch, size_t n_scratch);
/* Event-driven, over bit planes: work in proportion to the spikes (float weights; binarized weights). */
/* x: channel-major bit planes (uint32_t), or pixel-major rows (uint64_t) padded by the conv's padding (one group);
 * y: floats, or with neurons a spike map (uint32_t), or with a firing range pixel-major rows (uint64_t). */
int albsnn_conv_events(const albsnn_conv *p, const void *x, void *y, uint64_t *words, size_t n_words, float *floats,
                       size_t n_floats);
int albsnn_conv_bit_events(const albsnn_conv *p, const void *x, void *y, uint64_t *words, size_t n_words,
                           int32_t *counts, size_t n_counts);
/* k-bit weights: sums of the integer codes times the inputs, then one multiply by the channel's scale. Dense, any
 * input (float sums; over bit planes of counts, exact integers); event by event over bit planes (int32 sums). */
int albsnn_conv_code_rows(const albsnn_code_conv *p, const void *x, void *y, float *scratch, size_t n_scratch);
int albsnn_conv_code_events(const albsnn_code_conv *p, const void *x, void *y, uint64_t *words, size_t n_words,
                            int32_t *counts, size_t n_counts);
int albsnn_affine(const albsnn_tensor *in, const void *x, const float *scale, const float *bias, float *y);
int albsnn_lif_layer(const albsnn_tensor *in, const void *x, const albsnn_lif *lif, const albsnn_tensor *out, uint32_t *y);
int albsnn_pool2d(const albsnn_pool *p, const void *x, void *y);
int albsnn_gap(const albsnn_tensor *in, const void *x, float *y);
int albsnn_step_mean(const albsnn_tensor *in, const void *x, float *logits);

#ifdef ALBSNN_TRACE
/* Defined by the application when built with -DALBSNN_TRACE: called for every neuron, step and element. */
void albsnn_trace(uint32_t layer, uint32_t step, uint32_t index, float h, int spike);
#endif

#ifdef __cplusplus
}
#endif

#endif /* ALBSNN_KERNELS_H */
