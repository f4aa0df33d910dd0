// Timeline: a per-phase record of training steps as complete events (name, start, duration,
// worker), written as Chrome trace-event JSON for chrome://tracing and Perfetto. Recording is
// lock-free and allocation-free: each worker appends to its own buffer, sized at construction.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "pardl/comm/byte_broadcast.hpp"
#include "pardl/core/atomic_file.hpp"
#include "pardl/core/errors.hpp"
#include "pardl/metrics/timer.hpp"

namespace pardl {

/// Complete events ("ph":"X") per worker, plus one lane for the master thread.
///
/// Lanes 0..workers()-1 belong to the workers (worker w writes only lane w), lane master() to the
/// thread that runs the step outside the parallel region. Two threads never write one lane, so
/// record() takes no lock; buffers are allocated once by the constructor, and events beyond a
/// lane's capacity are counted as dropped instead of stored. Names are not copied: pass string
/// literals or phase_names entries (anything that outlives the timeline).
class Timeline {
public:
    /// One recorded event; times in nanoseconds since the timeline's origin.
    struct Event {
        const char* name_data;
        std::size_t name_size;
        std::int64_t start_ns;
        std::int64_t duration_ns;
        std::string_view name() const { return {name_data, name_size}; }
        double start_us() const { return static_cast<double>(start_ns) / 1e3; }
        double duration_us() const { return static_cast<double>(duration_ns) / 1e3; }
    };

    /// `workers` worker lanes plus a master lane, each holding up to `max_events_per_worker`.
    explicit Timeline(std::size_t workers, std::size_t max_events_per_worker = std::size_t{1} << 20)
        : workers_(workers), capacity_(max_events_per_worker), lanes_(workers + 1), origin_(Clock::now()) {
        PARDL_REQUIRE(workers >= 1, ConfigError, "Timeline: needs at least one worker");
        // for_overwrite: the pages are not touched until events land in them.
        for (Lane& l : lanes_) l.events = std::make_unique_for_overwrite<Event[]>(capacity_);
    }

    Timeline(const Timeline&) = delete;
    Timeline& operator=(const Timeline&) = delete;
    Timeline(Timeline&&) = default;
    Timeline& operator=(Timeline&&) = default;

    std::size_t workers() const { return workers_; }
    /// The master thread's lane (reduce_workers, allreduce, update, step).
    std::size_t master() const { return workers_; }
    std::size_t lanes() const { return lanes_.size(); }
    std::size_t capacity() const { return capacity_; }
    /// Time zero of the events.
    Clock::time_point origin() const { return origin_; }

    /// Appends [begin, end) to `lane` (noexcept, no allocation, no lock); counted as dropped when
    /// the lane is full. Only the lane's own thread may call this while others record.
    void record(std::size_t lane, std::string_view name, Clock::time_point begin,
                Clock::time_point end) noexcept {
        if (lane >= lanes_.size()) return; // not a lane of this timeline: nothing to write to
        Lane& l = lanes_[lane];
        if (l.count == capacity_) {
            ++l.dropped;
            return;
        }
        l.events[l.count++] =
            Event{name.data(), name.size(), nanoseconds(begin - origin_), nanoseconds(end - begin)};
    }
    void record(std::size_t lane, Phase phase, Clock::time_point begin, Clock::time_point end) noexcept {
        record(lane, phase_names[static_cast<std::size_t>(phase)], begin, end);
    }

    /// The events of one lane, in recording order.
    std::span<const Event> events(std::size_t lane) const {
        return {lanes_[lane].events.get(), lanes_[lane].count};
    }
    /// Events stored over all lanes.
    std::size_t size() const {
        std::size_t n = 0;
        for (const Lane& l : lanes_) n += l.count;
        return n;
    }
    /// Events that did not fit, over all lanes.
    std::size_t dropped() const {
        std::size_t n = 0;
        for (const Lane& l : lanes_) n += l.dropped;
        return n;
    }
    /// Forgets every event (the buffers stay). Not while anyone records.
    void clear() {
        for (Lane& l : lanes_) l.count = l.dropped = 0;
    }

    /// The whole trace as one Chrome trace-event JSON object (process `pid`, named "rank <pid>").
    void write_chrome_trace(std::ostream& os, int pid = 0) const {
        os << "{\"traceEvents\":[\n";
        write_trace_events(os, pid);
        os << "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"dropped\":" << dropped()
           << ",\"workers\":" << workers_ << ",\"capacity_per_lane\":" << capacity_ << "}}\n";
    }

    /// The events of write_chrome_trace() alone, comma-separated without brackets (metadata events
    /// first), so several ranks' lists can be joined into one array. Every timestamp is shifted
    /// by `offset_us` (to put ranks on a common time origin).
    void write_trace_events(std::ostream& os, int pid, double offset_us = 0) const {
        char buf[256];
        auto put = [&](int n) { os.write(buf, std::min<std::streamsize>(n, sizeof buf - 1)); };
        put(std::snprintf(
            buf, sizeof buf,
            "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":\"rank "
            "%d\"}},\n{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{"
            "\"sort_index\":%d}}",
            pid, pid, pid, pid));
        for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
            const bool is_master = lane == master();
            // The master first, then the workers in order.
            const std::size_t sort = is_master ? 0 : lane + 1;
            if (is_master)
                put(std::snprintf(
                    buf, sizeof buf,
                    ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%zu,\"args\":{"
                    "\"name\":\"master\"}}",
                    pid, lane));
            else
                put(std::snprintf(
                    buf, sizeof buf,
                    ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%zu,\"args\":{"
                    "\"name\":\"worker %zu\"}}",
                    pid, lane, lane));
            put(std::snprintf(
                buf, sizeof buf,
                ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":%zu,\"args\":{"
                "\"sort_index\":%zu}}",
                pid, lane, sort));
        }
        for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
            for (const Event& e : events(lane)) {
                os << ",\n{\"name\":\"";
                write_escaped(os, e.name());
                put(std::snprintf(
                    buf, sizeof buf,
                    "\",\"cat\":\"step\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%d,\"tid\":%zu}",
                    e.start_us() + offset_us, e.duration_us(), pid, lane));
            }
        }
    }

private:
    struct alignas(64) Lane { // one cache line of bookkeeping per lane: no false sharing
        std::unique_ptr<Event[]> events;
        std::size_t count = 0;
        std::size_t dropped = 0;
    };

    static std::int64_t nanoseconds(Clock::duration d) noexcept {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    }

    static void write_escaped(std::ostream& os, std::string_view s) {
        for (const char c : s) {
            if (c == '"' || c == '\\') {
                os << '\\' << c;
            } else if (static_cast<unsigned char>(c) < 0x20) {
                char esc[8];
                std::snprintf(esc, sizeof esc, "\\u%04x",
                              static_cast<unsigned>(static_cast<unsigned char>(c)));
                os << esc;
            } else {
                os << c;
            }
        }
    }

    std::size_t workers_;
    std::size_t capacity_;
    std::vector<Lane> lanes_;
    Clock::time_point origin_;
};

/// Writes every rank's timeline into one Chrome trace file `file` (pid = rank). A collective:
/// every rank of `comm` calls it; only rank 0's `file` is used, and only rank 0 touches the
/// filesystem. Each rank's trace events reach rank 0 through the communicator (broadcasts from
/// that rank, in chunks), so ranks on nodes that share no filesystem, or lack rank 0's folder,
/// still give one trace; rank 0 writes it atomically as it arrives (write_file_atomically). Timestamps are
/// shifted to the earliest rank's origin, which lines ranks up when they share a steady clock (one
/// node). Throws CheckpointError on every rank if rank 0 could not write.
template <class Comm>
void write_timeline(const Timeline& timeline, Comm& comm, const std::filesystem::path& file) {
    const int rank = comm.rank();
    const int ranks = comm.size();
    const auto origin_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(timeline.origin().time_since_epoch()).count());
    const std::uint64_t base_ns = comm.min(origin_ns);
    const double dropped = comm.sum(static_cast<double>(timeline.dropped()));
    const double offset_us = static_cast<double>(origin_ns - base_ns) / 1e3;

    std::string mine;
    {
        std::ostringstream os;
        timeline.write_trace_events(os, rank, offset_us);
        mine = std::move(os).str();
    }
    // Every rank learns every rank's length (exact in a double up to 2^53 bytes).
    std::vector<double> lengths(static_cast<std::size_t>(ranks), 0.0);
    lengths[static_cast<std::size_t>(rank)] = static_cast<double>(mine.size());
    comm.allreduce_sum(std::span<double>(lengths));

    // Every rank's events reach rank 0 in broadcasts from that rank, a chunk at a time
    // (broadcast_bytes). sink(data, n) takes them on rank 0, in order, with the separators between
    // ranks.
    constexpr std::size_t chunk_bytes = std::size_t{3} << 16;
    std::vector<float> carrier(chunk_bytes / 3);
    std::vector<char> bytes(chunk_bytes);
    const auto gather = [&](const auto& sink) {
        for (int r = 0; r < ranks; ++r) {
            if (rank == 0 && r > 0) sink(",\n", 2);
            if (r == 0) {
                if (rank == 0) sink(mine.data(), mine.size());
                continue;
            }
            const auto length = static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)]);
            for (std::size_t at = 0; at < length; at += chunk_bytes) {
                const std::span<char> part(bytes.data(), std::min(chunk_bytes, length - at));
                if (rank == r) std::copy_n(mine.data() + at, part.size(), part.data());
                detail::broadcast_bytes(comm, part, r, carrier);
                if (rank == 0) sink(part.data(), part.size());
            }
        }
    };
    const auto discard = [](const char*, std::size_t) {};

    // Rank 0 writes the chunks as they come (write_file_atomically: a temporary file, renamed when
    // whole). Every rank makes the same broadcasts whatever becomes of that write: one that fails
    // part way keeps receiving, and one that fails before it starts (no temporary file) receives
    // everything after, so that no rank is left waiting in a broadcast.
    std::string why;
    if (rank == 0) {
        bool gathered = false;
        try {
            write_file_atomically<CheckpointError>(file, "timeline", [&](const auto& put) {
                std::exception_ptr failed;
                const auto sink = [&](const char* data, std::size_t n) {
                    if (failed) return;
                    try {
                        put(data, n);
                    } catch (...) {
                        failed = std::current_exception();
                    }
                };
                const std::string head = "{\"traceEvents\":[\n";
                sink(head.data(), head.size());
                gathered = true;
                gather(sink);
                const std::string tail = "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"dropped\":" +
                                         std::to_string(static_cast<std::uint64_t>(dropped)) +
                                         ",\"ranks\":" + std::to_string(ranks) +
                                         ",\"workers_per_rank\":" + std::to_string(timeline.workers()) +
                                         ",\"capacity_per_lane\":" + std::to_string(timeline.capacity()) +
                                         "}}\n";
                sink(tail.data(), tail.size());
                if (failed) std::rethrow_exception(failed);
            });
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (!gathered) gather(discard);
    } else {
        gather(discard);
    }
    if (comm.max(static_cast<std::uint64_t>(!why.empty())) != 0)
        throw CheckpointError(rank == 0 ? why : "rank 0 could not write the timeline (rank 0 says why)");
}

} // namespace pardl
