/* meta-spider: the llama.cpp eval-callback filter (see backends/llamacpp/eval_filter.py).
 *
 * The graph scheduler asks the eval callback about every node of every graph
 * (about 40 per layer). Entering Python for each costs more than the hooks'
 * own work, so this callback answers the scheduler in C: "no" to every node
 * while nothing is hooked, "yes" to the named layer outputs while a read or
 * an injection is due. Once such a node is computed it either calls the
 * Python hook, or, for a one-row node given a native delta, adds the delta
 * itself: a layer-normed row's softmax attention over a few keys, with the
 * weights folded by the caller (score = norm(row) W + b per head, delta =
 * softmax(score) O * scale). Sums run in double; a non-finite delta or an
 * unexpected tensor stops the graph and is reported through `error`.
 */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define META_SPIDER_MAX_NAMES 256
#define META_SPIDER_NAME_LEN 64 /* GGML_MAX_NAME */
#define META_SPIDER_GGML_TYPE_F32 0

typedef bool (*meta_spider_eval_fn)(void *tensor, bool ask, void *user_data);
typedef const char *(*meta_spider_name_fn)(const void *tensor);
typedef size_t (*meta_spider_nbytes_fn)(const void *tensor);
typedef bool (*meta_spider_contiguous_fn)(const void *tensor);
typedef void (*meta_spider_copy_fn)(void *tensor, void *data, size_t offset, size_t size);

struct meta_spider_delta {
    int64_t dim;        /* row length (n_embd) */
    int64_t heads;      /* softmax groups */
    int64_t keys;       /* keys per group */
    const float *score_weight; /* [dim, heads * keys], row-major */
    const float *score_bias;   /* [heads * keys] */
    const float *out_weight;   /* [heads * keys, dim], row-major */
    float scale;
    float eps;
    float *row;         /* scratch: dim floats */
    double *scores;     /* scratch: heads * keys doubles */
};

struct meta_spider_filter {
    int n_names; /* 0: nothing is hooked, every node is declined */
    char names[META_SPIDER_MAX_NAMES][META_SPIDER_NAME_LEN];
    struct meta_spider_delta *native[META_SPIDER_MAX_NAMES]; /* NULL: the Python hook handles the name */
    int seen[META_SPIDER_MAX_NAMES]; /* computed nodes handled natively, per name */
    int error; /* 0, or 1 + name index * 4 + kind (kind 1: not a one-row f32 tensor, 2: non-finite delta) */
    meta_spider_eval_fn hook;
    meta_spider_name_fn get_name;
    meta_spider_nbytes_fn nbytes;
    meta_spider_contiguous_fn is_contiguous;
    meta_spider_copy_fn tensor_get;
    meta_spider_copy_fn tensor_set;
};

size_t meta_spider_filter_size(void) { return sizeof(struct meta_spider_filter); }
size_t meta_spider_delta_size(void) { return sizeof(struct meta_spider_delta); }

static int add_delta(struct meta_spider_delta *delta) {
    const int64_t d = delta->dim, n = delta->heads * delta->keys;
    float *row = delta->row;
    double *scores = delta->scores;
    double mean = 0.0, variance = 0.0;
    for (int64_t i = 0; i < d; i++) mean += row[i];
    mean /= (double)d;
    for (int64_t i = 0; i < d; i++) variance += (row[i] - mean) * (row[i] - mean);
    variance /= (double)d;
    const double inv = 1.0 / sqrt(variance + delta->eps);
    for (int64_t j = 0; j < n; j++) scores[j] = delta->score_bias[j];
    for (int64_t i = 0; i < d; i++) {
        const double normed = (row[i] - mean) * inv;
        const float *w = delta->score_weight + i * n;
        for (int64_t j = 0; j < n; j++) scores[j] += normed * w[j];
    }
    for (int64_t h = 0; h < delta->heads; h++) {
        double *group = scores + h * delta->keys, top = group[0], total = 0.0;
        for (int64_t k = 1; k < delta->keys; k++) top = group[k] > top ? group[k] : top;
        for (int64_t k = 0; k < delta->keys; k++) total += (group[k] = exp(group[k] - top));
        for (int64_t k = 0; k < delta->keys; k++) group[k] /= total;
    }
    for (int64_t i = 0; i < d; i++) {
        double change = 0.0;
        for (int64_t j = 0; j < n; j++) change += scores[j] * delta->out_weight[j * d + i];
        const float value = (float)(change * delta->scale);
        if (!isfinite(value)) return 2;
        row[i] += value;
    }
    return 0;
}

static bool run_native(struct meta_spider_filter *filter, int index, void *tensor) {
    struct meta_spider_delta *delta = filter->native[index];
    const size_t size = (size_t)delta->dim * sizeof(float);
    int kind = 0;
    /* enum ggml_type is the first field of struct ggml_tensor */
    if (*(const int32_t *)tensor != META_SPIDER_GGML_TYPE_F32 || filter->nbytes(tensor) != size ||
        !filter->is_contiguous(tensor)) {
        kind = 1;
    } else {
        filter->tensor_get(tensor, delta->row, 0, size);
        kind = add_delta(delta);
        if (kind == 0) filter->tensor_set(tensor, delta->row, 0, size);
    }
    filter->seen[index] += 1;
    if (kind != 0) {
        if (filter->error == 0) filter->error = 1 + index * 4 + kind;
        return false;
    }
    return true;
}

bool meta_spider_filter_eval(void *tensor, bool ask, void *user_data) {
    struct meta_spider_filter *filter = (struct meta_spider_filter *)user_data;
    if (filter == NULL || filter->n_names <= 0 || tensor == NULL) {
        return false;
    }
    const char *name = filter->get_name(tensor);
    if (name == NULL) {
        return false;
    }
    for (int i = 0; i < filter->n_names; i++) {
        if (strncmp(name, filter->names[i], META_SPIDER_NAME_LEN) == 0) {
            if (ask) return true;
            if (filter->native[i] != NULL) return run_native(filter, i, tensor);
            return filter->hook(tensor, false, NULL);
        }
    }
    return false;
}
