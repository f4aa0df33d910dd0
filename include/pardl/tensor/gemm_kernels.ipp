// The GEMM's per-instruction-set code: register-blocked micro-kernels and operand packing, written
// once against `Vec`. Not a standalone header: gemm.hpp includes it once per instruction set,
// inside that set's namespace and target region (so every function here is compiled for it),
// after defining there `Vec` with
//   V, width, load, store, set1, add, fma   the vector type (width floats) and its operations;
//   load_first                              a load of the first 1 .. width floats only;
//   mr_max, nv_max                          the largest tile: mr_max rows x nv_max vectors;
//   transpose_block, transpose              a block transposition for packing (block 0: none),
//                                           of blocks with fewer rows or columns too;
//   dot_rows, dot_cols                      the dot-product kernel's tile (see dot_kernel);
//   sum16 (optional)                        its lane sums, faster than sum16_by_halving;
//   in_register (optional)                  holds a loaded vector in a register (load_once);
//   packed_b_row_stride (optional)          a row-major B whose rows lie a multiple of this many
//                                           floats apart is packed (packs_readable_b).
// It defines `Kernels`, which gemm.hpp's driver run<Kernels> reads. (KernelSet is a template only
// so that `if constexpr` can discard what Vec lacks; it is instantiated for this Vec alone.)

template <class Vec>
struct KernelSet {
    static constexpr int mr_max = Vec::mr_max;
    static constexpr int nv_max = Vec::nv_max;
    static constexpr int lanes = Vec::width;
    static constexpr int nr_max = nv_max * lanes;
    /// How many rows ahead the micro-kernel asks for B (0: not at all). AVX-512 only: with AVX2's
    /// 12 multiply-adds per k the request cost more than it saved (64 x 256 x 3136 went from
    /// 39.0 to 37.7% of the AVX-512 peak), and the hardware kept up with the slower kernel.
    static constexpr size_t b_prefetch_rows = lanes >= 16 ? 8 : 0;

    /// Whether run_blocked packs a row-major op(B) that it could read in place (rows ldb floats
    /// apart, not crowded) for a product of m rows of C. In place, every A sliver streams B's rows
    /// from the L2, ldb apart; packed, it streams contiguous slivers, and the copy is shared by the
    /// m / mr slivers. On AVX2 packing paid from 8 slivers where B's rows lie a multiple of 1 KiB
    /// apart (Vec::packed_b_row_stride 256), so that a sliver's column falls into 4 of the L1's 64
    /// sets: W-MLP's and W-CNN's Dense<256>, weights and output gradients. Measured on an AMD EPYC
    /// Zen 3 guest (32 KiB 8-way L1) with both paths alternating in one process, best of 101: 64 x
    /// 256 x 784 77 -> 82 GFLOP/s, its weight gradient TN 784 x 256 x 64 85 -> 97, 64 x 256 x 3136
    /// 75 -> 82. Other strides gained 6-11% in gemm alone from 17 slivers (TN 256 x 128 x 64 84 ->
    /// 91), but in W-CNN's conv2, whose input gradient (TN 196 x 288 x 64, per sample) would have
    /// packed the same weights 64 times a batch, the layer's backward ran about 5% slower: those
    /// stay in place, as do products of fewer slivers (Dense<10>'s, 32-row shards), where packing
    /// gained nothing or lost up to 13%. The AVX-512 kernels were tuned with B in place (Intel
    /// Xeon, AMD Zen 5) and keep it: not measured on this rule.
    static constexpr bool packs_readable_b(size_t m, size_t ldb) noexcept {
        if constexpr (requires { Vec::packed_b_row_stride; })
            return (m + mr_max - 1) / mr_max >= 8 && ldb % Vec::packed_b_row_stride == 0;
        else
            return false;
    }
    static_assert(nc_max % nr_max == 0);

    /// c_new = beta c + t for one element of C, with the arithmetic of the vector path below
    /// (beta == 0 never reads c), so that ragged edges and full tiles agree bit for bit.
    static float combine(float beta, float c, float t) noexcept {
        if (beta == 0.0f) return t;
        if (beta == 1.0f) return c + t;
        return std::fma(beta, c, t);
    }

    /// C(MR x nr) = sum_p a(p) b(p)^T + beta C, where a(p) = a + p * a_step holds MR elements of a
    /// column of op(A) and b(p) = b + p * b_step holds NV * lanes elements of a row of op(B)
    /// (padded beyond nr). Reading A and B through steps lets unpacked operands stand in for packed
    /// ones.
    template <int MR, int NV>
    static void micro_kernel(size_t kc, const float* a, size_t a_step, const float* b, size_t b_step,
                             float* c, size_t ldc, size_t nr, float beta, const float* bias,
                             bool relu) noexcept {
        tile_product<MR, NV>(std::make_integer_sequence<int, MR * NV>{}, kc, a, a_step, b, b_step, c, ldc, nr,
                             beta, bias, relu);
    }

    /// micro_kernel's body. Accumulator T is row T / NV, vector T % NV of the tile, and every use
    /// of the accumulators is a fold over the pack T..., so each index is a constant from the
    /// start. Indexed by loop variables instead, the accumulators kept a home on the stack (GCC
    /// scalarises an array before it unrolls loops): stored there before and after the k loop
    /// and reloaded for the bias and the stores, a tenth of a 9-deep product's time.
    template <int MR, int NV, int... T>
    static void tile_product(std::integer_sequence<int, T...>, size_t kc, const float* a, size_t a_step,
                             const float* b, size_t b_step, float* c, size_t ldc, size_t nr, float beta,
                             const float* bias, bool relu) noexcept {
        using V = typename Vec::V;
        V acc[MR * NV] = {(static_cast<void>(T), Vec::set1(0.0f))...};
        for (size_t p = 0; p < kc; ++p) {
            // B read in place walks down rows ldb apart, two cache lines from each, and where B
            // has left the L2 (W-CNN's Dense<256> weights, 3.2 MB) the hardware prefetchers did
            // not keep up: asking for the row b_prefetch_rows ahead took that forward product
            // from 64 to 73% of peak on an Intel Xeon (W-MLP and W-CNN Serial epochs 2-3% shorter).
            // A packed B is contiguous; the request then finds its line on the way already.
            // Changes no arithmetic.
            if constexpr (b_prefetch_rows != 0) {
                PARDL_UNROLL_ALL for (int line = 0; line < NV * lanes;
                                      line += static_cast<int>(cache_line_floats))
                    __builtin_prefetch(b + b_prefetch_rows * b_step + line);
            }
            // The compiler loads each B vector and broadcasts each A element once per k.
            ((acc[T] = Vec::fma(Vec::set1(a[T / NV]), Vec::load(b + (T % NV) * lanes), acc[T])), ...);
            a += a_step;
            b += b_step;
        }
        // The epilogue's bias (row i's, with beta == 0) joins the sum in registers.
        if (bias != nullptr) ((acc[T] = Vec::add(acc[T], Vec::set1(bias[T / NV]))), ...);
        if (nr == static_cast<size_t>(NV * lanes)) {
            const auto finish = [&](V out, float* dst) {
                // beta == 0 must not read C: it may hold NaN or garbage. For beta == 1 the fused
                // multiply-add is exactly C + acc (C * 1 is exact, then one rounding).
                if (beta != 0.0f) out = Vec::fma(Vec::set1(beta), Vec::load(dst), out);
                Vec::store(dst, relu ? Vec::relu(out) : out);
            };
            (finish(acc[T], c + (T / NV) * ldc + (T % NV) * lanes), ...);
            return;
        }
        // A ragged right edge goes through a tile on the stack so stores never pass column n.
        alignas(64) float tile[MR][NV * lanes];
        (Vec::store(&tile[T / NV][(T % NV) * lanes], acc[T]), ...);
        for (int i = 0; i < MR; ++i) {
            float* row = c + i * ldc;
            for (size_t j = 0; j < nr; ++j) {
                const float v = combine(beta, row[j], tile[i][j]);
                row[j] = relu ? ScalarVec::relu(v) : v;
            }
        }
    }

    // The ragged right edge of C, when op(A) = A^T is read in place (its k-th row holds column k
    // of op(A), m elements in a row): vectors run down C's rows and each edge column of op(B) is
    // one broadcast. An edge 4 columns wide (196 = 6 * 32 + 4, conv2's pixels) then costs
    // m / lanes multiply-adds per k instead of one whole vector per row of C, 3/4 of it padding.
    // Per element the arithmetic is the micro-kernel's (one fused multiply-add per k in order,
    // then bias, beta and ReLU), so which path computes an edge changes no bit.
    static constexpr int edge_vectors = mr_max / 3 > 0 ? mr_max / 3 : 1; // 16 accumulators on
    static constexpr int edge_columns = 4;                               // AVX-512, 8 on AVX2

    /// C(rows x cols) = sum_p a(p) b(p)^T + beta C for rows <= edge_vectors * lanes and
    /// cols <= edge_columns, with a(p) = a + p * a_step holding the rows' elements and
    /// b(p) = b + p * b_step the columns'. One tile shape for every edge (a table of shapes
    /// would double the library's compile time): missing rows load as zeros, a missing column
    /// repeats the last one, and neither reaches C.
    static void edge_kernel(size_t kc, const float* a, size_t a_step, size_t rows, const float* b,
                            size_t b_step, size_t cols, float* c, size_t ldc, float beta, const float* bias,
                            bool relu) noexcept {
        edge_tile(std::make_integer_sequence<int, edge_columns * edge_vectors>{}, kc, a, a_step, rows, b,
                  b_step, cols, c, ldc, beta, bias, relu);
    }

    /// edge_kernel's body. Accumulator T is column T / edge_vectors, vector T % edge_vectors, and
    /// as in tile_product every use of the accumulators is a fold over T..., so they stay in
    /// registers: indexed by loop variables, they were stored to the stack on every k step.
    template <int... T>
    static void edge_tile(std::integer_sequence<int, T...>, size_t kc, const float* a, size_t a_step,
                          size_t rows, const float* b, size_t b_step, size_t cols, float* c, size_t ldc,
                          float beta, const float* bias, bool relu) noexcept {
        using V = typename Vec::V;
        constexpr int MV = edge_vectors, NC = edge_columns;
        size_t lanes_in[MV]; // rows of C in vector v
        for (int v = 0; v < MV; ++v) {
            const size_t first = static_cast<size_t>(v) * lanes;
            lanes_in[v] = rows > first ? std::min<size_t>(lanes, rows - first) : 0;
        }
        size_t column[NC];
        for (int j = 0; j < NC; ++j) column[j] = std::min<size_t>(j, cols - 1);
        V acc[NC * MV] = {(static_cast<void>(T), Vec::set1(0.0f))...};
        // Whole vectors of rows, or some missing: the choice is made once, not per k.
        if (rows == static_cast<size_t>(MV) * lanes) {
            for (size_t p = 0; p < kc; ++p, a += a_step, b += b_step)
                ((acc[T] = Vec::fma(Vec::load(a + (T % MV) * lanes), Vec::set1(b[column[T / MV]]), acc[T])),
                 ...);
        } else {
            for (size_t p = 0; p < kc; ++p, a += a_step, b += b_step)
                ((acc[T] = Vec::fma(Vec::load_first(a + (T % MV) * lanes, lanes_in[T % MV]),
                                    Vec::set1(b[column[T / MV]]), acc[T])),
                 ...);
        }
        if (bias != nullptr)
            ((acc[T] = Vec::add(acc[T], Vec::load_first(bias + (T % MV) * lanes, lanes_in[T % MV]))), ...);
        alignas(64) float tile[NC][MV * lanes];
        (Vec::store(&tile[T / MV][(T % MV) * lanes], acc[T]), ...);
        for (size_t i = 0; i < rows; ++i) {
            float* row = c + i * ldc;
            for (size_t j = 0; j < cols; ++j) {
                const float out = combine(beta, row[j], tile[j][i]);
                row[j] = relu ? ScalarVec::relu(out) : out;
            }
        }
    }

    /// Whether edge_kernel tiles do an edge `nr` columns wide over m rows in at most half the
    /// vector multiply-adds of the micro-kernels' slivers (one vector per row for every lanes
    /// columns begun). Half, because its tiles run slower per multiply-add (masked loads, one
    /// broadcast per column): at a bare majority (W-MLP's 10-wide output layer, 96 against 128)
    /// the slivers were faster.
    static constexpr bool edge_down_rows_pays(size_t m, size_t nr) noexcept {
        const size_t tiles = (m + edge_vectors * lanes - 1) / (edge_vectors * lanes) *
                             ((nr + edge_columns - 1) / edge_columns);
        return 2 * tiles * edge_vectors * edge_columns <= m * ((nr + lanes - 1) / lanes);
    }

    /// The edge C(m x nr) of one k block through edge_kernel tiles (arguments as edge_kernel's).
    static void edge_columns_down_rows(size_t kc, const float* a, size_t a_step, size_t m, const float* b,
                                       size_t b_step, float* c, size_t ldc, size_t nr, float beta,
                                       const float* bias, bool relu) noexcept {
        constexpr size_t rows_max = static_cast<size_t>(edge_vectors) * lanes;
        for (size_t j = 0; j < nr; j += edge_columns)
            for (size_t i = 0; i < m; i += rows_max)
                edge_kernel(kc, a + i, a_step, std::min(rows_max, m - i), b + j, b_step,
                            std::min<size_t>(edge_columns, nr - j), c + i * ldc + j, ldc, beta,
                            bias != nullptr ? bias + i : nullptr, relu);
    }

    // The dot-product kernel, for C = A B^T when k is long (gemm.hpp: dot_pays): both operands are
    // read along k in place, where the micro-kernels need both transposed into their packing. Each
    // element of C is a dot product kept in 16 lanes: lane l sums the products of k = l, l + 16,
    // l + 32, ... in order with fused multiply-adds, and sum16_by_halving adds the lanes. That
    // arithmetic is fixed at 16 lanes whatever the vector width (an AVX2 accumulator is two
    // vectors, a scalar one sixteen floats), so every instruction set gives the same bits.
    static constexpr int dot_rows = Vec::dot_rows, dot_cols = Vec::dot_cols;
    static constexpr int dot_lanes = 16;
    static constexpr int dot_parts = dot_lanes / lanes; // vectors per accumulator
    static_assert(dot_lanes % lanes == 0);

    /// C(rows x cols) = A B^T + beta C for rows <= dot_rows and cols <= dot_cols: `a` holds the
    /// rows' k elements each (stride lda), `b` the columns' (stride ldb). One tile shape for every
    /// edge, as edge_kernel: a missing row or column repeats the last one and never reaches C.
    static void dot_kernel(size_t k, const float* a, size_t lda, size_t rows, const float* b, size_t ldb,
                           size_t cols, float* c, size_t ldc, float beta) noexcept {
        dot_tile(std::make_integer_sequence<int, dot_rows * dot_cols * dot_parts>{},
                 std::make_integer_sequence<int, dot_rows * dot_parts>{},
                 std::make_integer_sequence<int, dot_cols * dot_parts>{}, k, a, lda, rows, b, ldb, cols, c,
                 ldc, beta);
    }

    /// Vec::load, held in a register where Vec says how (in_register): a vector that several
    /// multiply-adds use is then loaded once, where GCC otherwise folds the load into each of them.
    static typename Vec::V load_once(const float* p) noexcept {
        typename Vec::V v = Vec::load(p);
        if constexpr (requires { Vec::in_register(v); }) Vec::in_register(v);
        return v;
    }

    /// One k step of dot_tile: acc[T] += row vector x column vector (dot_tile says which). Always
    /// inlined: at -O2 GCC kept it out of line (as a lambda) with the accumulators in memory, and
    /// the dot-product kernels ran three times slower than at -O3.
    template <int... T>
    [[gnu::always_inline]] static inline void dot_step(std::integer_sequence<int, T...>, typename Vec::V* acc,
                                                       const typename Vec::V* av,
                                                       const typename Vec::V* bv) noexcept {
        constexpr int C = dot_cols, P = dot_parts;
        ((acc[T] = Vec::fma(av[T / P / C * P + T % P], bv[T / P % C * P + T % P], acc[T])), ...);
    }

    /// dot_kernel's body. Accumulator T is part T % dot_parts of the dot product of row
    /// T / dot_parts / dot_cols and column T / dot_parts % dot_cols; vector I of the rows' and J of
    /// the columns' loads per k step is part I % dot_parts of row I / dot_parts (J likewise). Folds
    /// over the packs keep every one in a register (see tile_product), and each row and column
    /// vector is loaded once per k step: left to fold them into the multiply-adds, GCC loaded the
    /// columns again for every row, 15 loads per 12 multiply-adds.
    template <int... T, int... I, int... J>
    static void dot_tile(std::integer_sequence<int, T...>, std::integer_sequence<int, I...>,
                         std::integer_sequence<int, J...>, size_t k, const float* a, size_t lda, size_t rows,
                         const float* b, size_t ldb, size_t cols, float* c, size_t ldc, float beta) noexcept {
        using V = typename Vec::V;
        constexpr int R = dot_rows, C = dot_cols, P = dot_parts;
        const float* row[R];
        for (int i = 0; i < R; ++i) row[i] = a + std::min<size_t>(i, rows - 1) * lda;
        const float* col[C];
        for (int j = 0; j < C; ++j) col[j] = b + std::min<size_t>(j, cols - 1) * ldb;
        V acc[R * C * P] = {(static_cast<void>(T), Vec::set1(0.0f))...};
        size_t p = 0;
        for (; p + dot_lanes <= k; p += dot_lanes) {
            const V av[R * P] = {load_once(row[I / P] + p + (I % P) * lanes)...};
            const V bv[C * P] = {load_once(col[J / P] + p + (J % P) * lanes)...};
            dot_step(std::integer_sequence<int, T...>{}, acc, av, bv);
        }
        if (p < k) {
            // The last k % 16 products: missing lanes load zeros, and adding 0 * 0 leaves a lane's
            // sum as it is (it starts at +0, so it is never -0), on every instruction set alike.
            const size_t rest = k - p;
            const auto part = [rest](const float* x, int h) noexcept {
                const size_t first = static_cast<size_t>(h) * lanes;
                return rest > first ? Vec::load_first(x + first, std::min<size_t>(lanes, rest - first))
                                    : Vec::set1(0.0f);
            };
            const V av[R * P] = {part(row[I / P] + p, I % P)...};
            const V bv[C * P] = {part(col[J / P] + p, J % P)...};
            dot_step(std::integer_sequence<int, T...>{}, acc, av, bv);
        }
        alignas(64) float lane_sums[R * C][dot_lanes];
        (Vec::store(&lane_sums[T / P][(T % P) * lanes], acc[T]), ...);
        float sums[R * C];
        if constexpr (requires { Vec::sum16(&lane_sums[0][0], R * C, sums); })
            Vec::sum16(&lane_sums[0][0], R * C, sums);
        else
            for (int t = 0; t < R * C; ++t) sums[t] = sum16_by_halving(lane_sums[t]);
        // Loops bounded by the tile's constants (GCC cannot see rows <= R and warned of reading
        // sums uninitialised); a whole tile row is then C constant moves, where std::copy_n with
        // a run-time count became a call to memcpy per row.
        for (int i = 0; i < R && static_cast<size_t>(i) < rows; ++i) {
            float* out = c + i * ldc;
            const float* in = sums + i * C;
            if (beta == 0.0f && cols == C)
                for (int j = 0; j < C; ++j) out[j] = in[j];
            else
                for (int j = 0; j < C && static_cast<size_t>(j) < cols; ++j)
                    out[j] = combine(beta, out[j], in[j]);
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
            // The last block may be narrower than `block` (a k of 10: W-MLP's Dense<10> input
            // gradient), where element-by-element copies took as long as the product.
            constexpr size_t block = Vec::transpose_block;
            for (; p < kc; p += block) {
                const size_t cols = std::min(block, kc - p);
                for (size_t i = 0; i < width; i += block) {
                    const size_t n_rows = rows > i ? std::min(block, rows - i) : 0;
                    // A block reads one cache line from each of `block` rows: too many streams
                    // for the hardware prefetcher when src is a batch-sized gradient that has left
                    // the L2 (conv1's, 100 KB a sample). Asking for each row four blocks ahead
                    // took W-CNN's conv1 backward from 1.6 to about 0.9 ms per batch.
                    for (size_t r = 0; r < n_rows; ++r)
                        __builtin_prefetch(src + (i + r) * lds + p + 4 * block);
                    Vec::transpose(src + i * lds + p, lds, n_rows, cols, dst + p * ldd + i, ldd,
                                   std::min(block, width - i));
                }
            }
        }
        for (; p < kc; ++p) {
            float* d = dst + p * ldd;
            for (size_t i = 0; i < rows; ++i) d[i] = src[i * lds + p];
            for (size_t i = rows; i < width; ++i) d[i] = 0.0f;
        }
    }

    /// Packs an mr x kc block of op(A) as kc groups of mr. `a` points at op(A)(i0, p0); op(A) = A
    /// is transposed into the groups, op(A) = A^T holds each group contiguously and is copied.
    static void pack_a(Op op_a, size_t mr, size_t kc, const float* a, size_t lda, float* dst) noexcept {
        if (op_a == Op::N) return pack_transposed(a, lda, mr, mr, kc, dst, mr);
        size_t p = 0;
        if constexpr (Vec::width >= mr_max) {
            // One vector per group: a partial load, and a whole store whose spill past the group
            // the next group overwrites, while it stays inside this sliver. A copy_n of mr floats
            // per k called memmove each time: at 512^3 TN, packing A took 117 thousand TSC cycles
            // per product that way and 87 thousand this way, of about 2.7 million.
            for (; p < kc && p * mr + Vec::width <= kc * mr; ++p)
                Vec::store(dst + p * mr, Vec::load_first(a + p * lda, mr));
        }
        for (; p < kc; ++p) std::copy_n(a + p * lda, mr, dst + p * mr);
    }

    /// Packs a kc x nc block of op(B) into slivers of nr_max columns (kc rows each, zero-padded past
    /// nc). `b` points at op(B)(p0, j0); op(B) = B is read along rows, op(B) = B^T along columns.
    static void pack_b(Op op_b, size_t kc, size_t nc, const float* b, size_t ldb, float* dst) noexcept {
        for (size_t j = 0; j < nc; j += nr_max) {
            const size_t nr = std::min<size_t>(nr_max, nc - j);
            float* d = dst + j * kc;
            if (op_b == Op::N && nr == static_cast<size_t>(nr_max)) {
                // Whole slivers a vector at a time (a copy_n per row calls memmove for 16 floats).
                const float* src = b + j;
                for (size_t p = 0; p < kc; ++p, d += nr_max, src += ldb)
                    for (int v = 0; v < nv_max; ++v) Vec::store(d + v * lanes, Vec::load(src + v * lanes));
            } else if (op_b == Op::N) {
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
