"""Before/after HTML reports built on :class:`mne.Report`."""
