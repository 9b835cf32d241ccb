"""The batch run's network ends: a source fed through a spool, a destination each committed
output is sent to. Opened (and probed) before the run starts, so that wrong credentials or
an unreachable peer stop it with one line before anything is done."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from anonymizer.errors import UsageError
from anonymizer.io.writer import TEMP_PREFIX
from anonymizer.keyed import KeyedSource
from anonymizer.net.options import NetOptions
from anonymizer.pipeline.layout import MIRROR
from anonymizer.pipeline.resume import Done, PreviousRuns

if TYPE_CHECKING:
    from anonymizer.net.destinations import Destination
    from anonymizer.net.feed import NetworkFeed
    from anonymizer.pipeline.runner import RunConfig


def url_kind(url: str | None) -> str:
    """What the audit log's header calls an end: folder, dimse or dicomweb (no address)."""
    if url is None:
        return "folder"
    return "dimse" if url.lower().startswith(("dimse://", "dimse+tls://")) else "dicomweb"


@dataclass
class NetworkEnds:
    """The network source (as a feed) and destination of one run; either may be None."""

    feed: NetworkFeed | None = None
    destination: Destination | None = None
    #: where a network source's instances wait for the workers
    spool_dir: Path | None = None
    #: a network destination's working folder (the run's OUT), removed at the end
    staging: Path | None = None
    kinds: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, config: RunConfig, keyed: KeyedSource, layout: str) -> NetworkEnds:
        """Check the options, open and probe the source and the destination.

        Raises
        ------
        UsageError, NetworkError
            One line: a bad option, refused credentials, an unreachable peer.
        """
        options = config.net or NetOptions()
        ends = cls(kinds={"source": url_kind(config.source_url),
                          "destination": url_kind(config.destination_url)})
        if config.source_url is None:
            if options.queries or options.studies_file is not None:
                raise UsageError("--query and --studies select what a network source sends; "
                                 "IN is a folder")
            if options.move_port is not None:
                raise UsageError("--move-port is for a dimse:// source")
        elif layout == MIRROR:
            raise UsageError("--layout mirror keeps input paths: a network source has none")
        if config.source_url is None and config.destination_url is None:
            return ends
        from anonymizer.net.destinations import open_destination
        from anonymizer.net.feed import NetworkFeed
        from anonymizer.net.sources import open_source, parse_selection

        try:
            if config.destination_url is not None:
                ends.staging = config.output_dir
                ends.destination = open_destination(config.destination_url, options)
                ends.destination.probe()
            if config.source_url is not None:
                selection = parse_selection(list(options.queries), options.studies_file)
                source = open_source(config.source_url, options)
                ends.spool_dir = config.output_dir / f"{TEMP_PREFIX}spool"
                ends.feed = NetworkFeed(source, selection, ends.spool_dir, keyed,
                                        depth=max(2 * config.batch_size, 8))
                source.probe()
        except BaseException:
            ends.close()
            raise
        return ends

    def describe(self) -> dict[str, str]:
        """What the audit log's run header says of the ends: their kinds, no address."""
        return dict(self.kinds)

    def done(self, token: str, previous: PreviousRuns, config: RunConfig) -> Done | None:
        """What an earlier run did with this instance, if that needs no redoing: written
        (and, into a folder, its output still there)."""
        done = None if config.force else previous.latest.get(token)
        if done is None or done.status != "written":
            return None
        if self.destination is None and not (
                done.output and (config.output_dir / done.output).is_file()):
            return None
        return done

    def cancel(self) -> None:
        """The run stops: a network source fetches no more."""
        if self.feed is not None:
            self.feed.cancel()

    def close(self) -> None:
        """Idempotent: stop fetching, drop the spool, close the connections."""
        feed, destination, self.feed, self.destination = self.feed, self.destination, None, None
        try:
            if feed is not None:
                feed.close()
        finally:
            if destination is not None:
                destination.close()
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
