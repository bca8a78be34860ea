#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The page images of one log generation's frames that this process wrote, by frame number, so
/// that readers take a frame's page from memory without a lock, a system call or a copy.
///
/// The writer appends the sealed pages of a commit (under the pager's state lock, before the
/// commit is published); a reader looks up only frames below its snapshot's frame limit, which it
/// took under the same lock, so every entry it reads was complete before it could see it. The
/// entries never change once written. Each snapshot of the generation holds this object, so the
/// memory lives until the log has restarted and the last reader of the generation has ended.
///
/// Only the first `capacity` frames of a generation are kept (the log holds more only when
/// readers delay checkpoints); later frames are read from the log file.
final class FrameImages: @unchecked Sendable {
    let generation: UInt64
    let capacity: Int
    /// `capacity` pointers to page bytes (nil: not kept); page memory owned by `pages`.
    private let bases: UnsafeMutablePointer<UnsafeRawPointer?>
    /// The images, in frame order; touched only by the writer.
    private var pages: [Page] = []

    init(generation: UInt64, capacity: Int) {
        self.generation = generation
        self.capacity = max(0, capacity)
        // calloc: a large table comes zeroed from the kernel and costs memory only where written.
        let raw = calloc(max(1, self.capacity), MemoryLayout<UnsafeRawPointer?>.stride)!
        bases = raw.bindMemory(to: UnsafeRawPointer?.self, capacity: max(1, self.capacity))
    }

    deinit { free(bases) }

    /// Keeps `page` as the image of `frame`, the next frame of the generation. Writer only,
    /// under the state lock, before the frame is published.
    func append(_ page: Page, frame: Int) {
        guard frame < capacity, frame == pages.count else { return }
        pages.append(page)
        bases[frame] = page.base
    }

    /// The image of `frame` as a borrowed page, valid while this object lives; nil when it was
    /// not kept. `frame` must be below the caller's snapshot frame limit.
    func page(_ frame: Int, size: Int) -> Page? {
        guard frame >= 0, frame < capacity, let base = bases[frame] else { return nil }
        return Page(mapped: base, size: size)
    }

    /// The image of `frame` with its own reference to the memory (for the writer, which may keep
    /// it past this object's life).
    func ownedPage(_ frame: Int) -> Page? {
        frame >= 0 && frame < pages.count ? pages[frame] : nil
    }

    var keptCount: Int { pages.count }
}
