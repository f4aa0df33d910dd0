// The GEMM's per-instruction-set code: register-blocked micro-kernels and operand packing, written
// once against `Vec`. Not a standalone header: gemm.hpp includes it once per instruction set,
// inside that set's namespace and target region (so every function here is compiled for it),
// after defining there `Vec` with
//   V, width, load, store, set1, add, fma   the vector type (width floats) and its operations;
//   mr_max, nv_max                          the largest tile: mr_max rows x nv_max vectors;
//   transpose_block, transpose              a block transposition for packing (block 0: none).
// It defines `Kernels`, which gemm.hpp's driver run<Kernels> reads. (KernelSet is a template only
// so that `if constexpr` can discard what Vec lacks; it is instantiated for this Vec alone.)

template <class Vec>
struct KernelSet {
    static constexpr int mr_max = Vec::mr_max;
    static constexpr int nv_max = Vec::nv_max;
    static constexpr int lanes = Vec::width;
    static constexpr int nr_max = nv_max * lanes;
    static_assert(nc_max % nr_max == 0);

    /// C(MR x nr) = sum_p a(p) b(p)^T + beta C, where a(p) = a + p * a_step holds MR elements of a
    /// column of op(A) and b(p) = b + p * b_step holds NV * lanes elements of a row of op(B)
    /// (padded beyond nr). Reading A and B through steps lets unpacked operands stand in for packed
    /// ones.
    template <int MR, int NV>
    static void micro_kernel(size_t kc, const float* a, size_t a_step, const float* b, size_t b_step,
                             float* c, size_t ldc, size_t nr, float beta, const float* bias,
                             bool relu) noexcept {
        using V = typename Vec::V;
        V acc[MR][NV];
        for (int i = 0; i < MR; ++i)
            for (int v = 0; v < NV; ++v) acc[i][v] = Vec::set1(0.0f);

        for (size_t p = 0; p < kc; ++p) {
            V bv[NV];
            for (int v = 0; v < NV; ++v) bv[v] = Vec::load(b + v * lanes);
            for (int i = 0; i < MR; ++i) {
                const V ai = Vec::set1(a[i]);
                for (int v = 0; v < NV; ++v) acc[i][v] = Vec::fma(ai, bv[v], acc[i][v]);
            }
            a += a_step;
            b += b_step;
        }

        // The epilogue's bias (row i's, with beta == 0) joins the sum in registers.
        if (bias != nullptr)
            for (int i = 0; i < MR; ++i) {
                const V bi = Vec::set1(bias[i]);
                for (int v = 0; v < NV; ++v) acc[i][v] = Vec::add(acc[i][v], bi);
            }
        if (nr == static_cast<size_t>(NV * lanes)) {
            for (int i = 0; i < MR; ++i) {
                float* row = c + i * ldc;
                for (int v = 0; v < NV; ++v) {
                    float* dst = row + v * lanes;
                    // beta == 0 must not read C: it may hold NaN or garbage.
                    V out = acc[i][v];
                    if (beta == 1.0f)
                        out = Vec::add(Vec::load(dst), acc[i][v]);
                    else if (beta != 0.0f)
                        out = Vec::fma(Vec::set1(beta), Vec::load(dst), acc[i][v]);
                    Vec::store(dst, relu ? Vec::relu(out) : out);
                }
            }
            return;
        }
        // A ragged right edge goes through a tile on the stack so stores never pass column n.
        alignas(64) float tile[MR][NV * lanes];
        for (int i = 0; i < MR; ++i)
            for (int v = 0; v < NV; ++v) Vec::store(&tile[i][v * lanes], acc[i][v]);
        for (int i = 0; i < MR; ++i) {
            float* row = c + i * ldc;
            if (beta == 0.0f)
                for (size_t j = 0; j < nr; ++j) row[j] = tile[i][j];
            else
                for (size_t j = 0; j < nr; ++j) row[j] = beta * row[j] + tile[i][j];
            if (relu)
                for (size_t j = 0; j < nr; ++j) row[j] = ScalarVec::relu(row[j]);
        }
    }

    /// micro_kernel<mr, nv> at [(mr - 1) * nv_max + nv - 1]: every (rows, vectors) pair gets its own
    /// fully unrolled kernel, so edge slivers keep their accumulators in registers instead of
    /// computing a padded full tile.
    static const std::array<KernelFn, mr_max * nv_max> table;

    /// dst[p * ldd + i] = src[i * lds + p] for i < rows, p < kc, and zero for rows <= i < width.
    /// Packing is a transposition for op(A) = A and op(B) = B^T; element by element it costs as
    /// much as the whole product when m or n is ~64, hence the block transposition.
    static void pack_transposed(const float* src, size_t lds, size_t rows, size_t width, size_t kc,
                                float* dst, size_t ldd) noexcept {
        size_t p = 0;
        if constexpr (Vec::transpose_block != 0) {
            constexpr size_t block = Vec::transpose_block;
            for (; p + block <= kc; p += block)
                for (size_t i = 0; i < width; i += block) {
                    const size_t n_rows = rows > i ? std::min(block, rows - i) : 0;
                    Vec::transpose(src + i * lds + p, lds, n_rows, dst + p * ldd + i, ldd,
                                   std::min(block, width - i));
                }
        }
        for (; p < kc; ++p) {
            float* d = dst + p * ldd;
            for (size_t i = 0; i < rows; ++i) d[i] = src[i * lds + p];
            for (size_t i = rows; i < width; ++i) d[i] = 0.0f;
        }
    }

    /// Packs rows [0, mr) x columns [0, kc) of op(A) = A (row-major, from `a`) as kc groups of mr.
    static void pack_a_rows(size_t mr, size_t kc, const float* a, size_t lda, float* dst) noexcept {
        pack_transposed(a, lda, mr, mr, kc, dst, mr);
    }

    /// Packs a kc x nc block of op(B) into slivers of nr_max columns (kc rows each, zero-padded past
    /// nc). `b` points at op(B)(p0, j0); op(B) = B is read along rows, op(B) = B^T along columns.
    static void pack_b(Op op_b, size_t kc, size_t nc, const float* b, size_t ldb, float* dst) noexcept {
        for (size_t j = 0; j < nc; j += nr_max) {
            const size_t nr = std::min<size_t>(nr_max, nc - j);
            float* d = dst + j * kc;
            if (op_b == Op::N) {
                const float* src = b + j;
                for (size_t p = 0; p < kc; ++p, d += nr_max, src += ldb) {
                    std::copy_n(src, nr, d);
                    std::fill(d + nr, d + nr_max, 0.0f);
                }
            } else {
                pack_transposed(b + j * ldb, ldb, nr, nr_max, kc, d, nr_max);
            }
        }
    }
};

template <class Vec>
inline constexpr std::array<KernelFn, KernelSet<Vec>::mr_max * KernelSet<Vec>::nv_max>
    KernelSet<Vec>::table = make_kernel_table<KernelSet<Vec>>(std::make_index_sequence<mr_max * nv_max>{});

using Kernels = KernelSet<Vec>;
