"""Image folders, path confinement to a data root, URL policy."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import gray, write_image

from streamvlm.errors import VideoError
from streamvlm.video import open_source
from streamvlm.video.locate import locate


def test_image_folder_sorted_by_name_at_i_over_fps(tmp_path):
    for i, suffix in enumerate([".png", ".jpg", ".bmp", ".png"]):
        write_image(tmp_path / f"img_{i:03d}{suffix}", gray(i))
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(tmp_path, fps=4) as src:
        frames = list(src)
    assert src.kind == "images" and (src.width, src.height) == (16, 8)
    assert src.duration == pytest.approx(1.0)
    assert [f.time for f in frames] == [0.0, 0.25, 0.5, 0.75]
    assert [abs(int(f.image.mean()) - gray(i)) <= 5 for i, f in enumerate(frames)] == [True] * 4


def test_broken_images_are_skipped_and_counted(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", gray(i))
    (tmp_path / "2.png").write_bytes(b"broken")
    with open_source(tmp_path, fps=1) as src:
        frames = list(src)
    assert [f.time for f in frames] == [0.0, 1.0, 3.0]
    assert (src.stats.decoded, src.stats.skipped_corrupt) == (3, 1)


def test_mostly_broken_folder_fails_past_the_ratio(tmp_path):
    write_image(tmp_path / "000.png", 10)
    for i in range(1, 25):
        (tmp_path / f"{i:03d}.png").write_bytes(b"broken")
    with pytest.raises(VideoError, match="too many damaged frames"):
        list(open_source(tmp_path, fps=1))


def test_symlink_escaping_the_root_is_refused(tmp_path, make_video):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    video = make_video("outside/v.mp4", [0.0, 0.04])
    os.symlink(video, root / "link.mp4")
    with pytest.raises(VideoError, match="escapes the data root"):
        open_source(root / "link.mp4", fps=2, allowed_root=root)
    with pytest.raises(VideoError, match="escapes the data root"):
        open_source(root / ".." / "outside" / "v.mp4", fps=2, allowed_root=root)
    inside = make_video("root/in.mp4", [0.0, 0.04])
    assert len(list(open_source(inside, fps=2, allowed_root=root))) == 1


def test_url_policy():
    assert locate("rtsp://cam.local/stream").kind == "url"
    with pytest.raises(VideoError, match="URL sources are refused"):
        locate("http://example.com/v.mp4", allowed_root="/data")
    assert locate("https://example.com/v.mp4", allowed_root="/data", allow_urls=True).kind == "url"
    with pytest.raises(VideoError, match="URL sources are refused"):
        locate("rtmp://example.com/live", allow_urls=False)
    for hostile in ["file:///etc/passwd", "concat:/a.mp4|/b.mp4", "pipe:0", "ftp://x/y.mp4"]:
        with pytest.raises(VideoError, match="unsupported source scheme"):
            locate(hostile)


def test_webcam_names():
    with pytest.raises(VideoError, match="no such webcam device"):
        locate("webcam:99")
    with pytest.raises(VideoError, match="escapes the data root"):
        locate("/dev/video0", allowed_root="/data")


def test_image_symlinks_leaving_the_root_refuse_the_folder(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "frames").mkdir(parents=True), (root / "shared").mkdir(), outside.mkdir()
    write_image(root / "frames" / "000.png", gray(0))
    write_image(root / "shared" / "kept.png", gray(1))
    os.symlink(root / "shared" / "kept.png", root / "frames" / "001.png")  # stays inside
    with open_source(root / "frames", fps=1, allowed_root=root) as src:
        assert [abs(int(f.image.mean()) - gray(i)) <= 5 for i, f in enumerate(src)] == [True] * 2
    write_image(outside / "secret.png", gray(2))
    os.symlink(outside / "secret.png", root / "frames" / "002.png")
    with pytest.raises(VideoError) as info:
        open_source(root / "frames", fps=1, allowed_root=root)
    assert str(info.value) == (f"{root / 'frames'}: image 002.png escapes the data root "
                               f"{root.resolve()}")
    os.symlink("../../outside/secret.png", root / "frames" / "000b.png")  # relative, via ..
    with pytest.raises(VideoError, match="image 000b.png escapes the data root"):
        open_source(root / "frames", fps=1, allowed_root=root)
    assert len(list(open_source(root / "frames", fps=1))) == 4  # no root: links are followed


def test_image_folder_skips_dangling_and_looping_links(tmp_path):
    write_image(tmp_path / "0.png", gray(0))
    os.symlink("1.png", tmp_path / "1.png")  # a loop
    os.symlink("missing.png", tmp_path / "2.png")
    (tmp_path / "3.png").mkdir()
    with open_source(tmp_path, fps=1, allowed_root=tmp_path) as src:
        assert len(list(src)) == 1
    assert (src.stats.decoded, src.stats.skipped_corrupt) == (1, 0)


def _one_line_error(source, **kwargs) -> str:
    with pytest.raises(VideoError) as info:
        open_source(source, fps=1, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_symlink_loops_and_odd_paths_are_video_errors(tmp_path, make_video):
    make_video("file.mp4", [0.0, 0.04])
    os.symlink("self", tmp_path / "self")
    os.symlink("b", tmp_path / "a"), os.symlink("a", tmp_path / "b")
    loops = [tmp_path / "self", tmp_path / "a", tmp_path / "self" / "x.mp4"]
    for root in (None, tmp_path):
        for path in loops:
            assert _one_line_error(path, allowed_root=root) == \
                f"{path}: cannot access (Too many levels of symbolic links)"
        path = tmp_path / "file.mp4" / "x"
        assert _one_line_error(path, allowed_root=root) == \
            f"{path}: cannot access (Not a directory)"
        for path in [tmp_path / ("n" * 300), tmp_path / ("d/" * 3000)]:
            assert _one_line_error(path, allowed_root=root) == \
                f"{path}: cannot access (File name too long)"
    assert _one_line_error("rtsp:" + "x" * 5000).startswith("rtsp:xxx")
    assert _one_line_error("a\0b.mp4") == "'a\\x00b.mp4': path contains a NUL byte"
    assert _one_line_error("x.mp4", allowed_root="a\0b") == \
        "data root 'a\\x00b' contains a NUL byte"


_UNPRIVILEGED_CHILD = """
import sys
from streamvlm.errors import VideoError
from streamvlm.video import open_source
for path in sys.argv[1:]:
    try:
        with open_source(path, fps=1) as src:
            print("frames", len(list(src)), src.stats.skipped_corrupt)
    except VideoError as error:
        print(error)
"""


def test_permission_denied_is_a_video_error(tmp_path, make_video):
    command = [sys.executable, "-c", _UNPRIVILEGED_CHILD]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that allow it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv")
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                   "--", *command]
    unreadable = make_video("unreadable.mp4", [0.0, 0.04])
    locked = tmp_path / "locked"
    locked.mkdir()
    make_video("locked/v.mp4", [0.0, 0.04])
    unlisted, partly = tmp_path / "unlisted", tmp_path / "partly"
    unlisted.mkdir(), partly.mkdir()
    write_image(unlisted / "0.png", 10)
    write_image(partly / "0.png", 10), write_image(partly / "1.png", 20)
    modes = {unreadable: 0o200, locked: 0o600, unlisted: 0o300, partly / "1.png": 0o200}
    for path, mode in modes.items():
        path.chmod(mode)
    try:
        paths = [unreadable, locked / "v.mp4", unlisted, partly]
        result = subprocess.run(command + [str(p) for p in paths], capture_output=True, text=True,
                                timeout=60)
    finally:
        for path in modes:
            path.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{unreadable}: cannot open as video (Permission denied)",
        f"{locked / 'v.mp4'}: cannot access (Permission denied)",
        f"{unlisted}: cannot list folder (Permission denied)",
        "frames 1 1",  # the unreadable image is skipped and counted
    ]


def test_image_names_are_not_read_as_sequence_patterns(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "frames%d").mkdir(parents=True), outside.mkdir()
    write_image(tmp_path / "tmp.png", gray(0)).rename(root / "frames%d" / "1.png")
    write_image(outside / "1.png", gray(5))
    os.symlink(outside, root / "frames0")  # "frames%d/1.png" as a pattern names frames0/1.png
    with open_source(root / "frames%d", fps=1, allowed_root=root) as src:
        assert [abs(int(f.image.mean()) - gray(0)) <= 5 for f in src] == [True]


def test_playlists_reading_other_files_are_refused_under_a_root(tmp_path, make_video):
    root = tmp_path / "root"
    root.mkdir(), (tmp_path / "outside").mkdir()
    make_video("outside/v.ts", [i / 25 for i in range(25)])
    make_video("outside/v.mp4", [i / 25 for i in range(25)])
    os.symlink(tmp_path / "outside", root / "sub")
    hls = root / "list.m3u8"
    hls.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\n../outside/v.ts\n"
                   "#EXT-X-ENDLIST\n")
    concat = root / "disguised.mp4"
    concat.write_text("ffconcat version 1.0\nfile sub/v.mp4\n")
    for path, fmt in [(hls, "hls"), (concat, "concat")]:
        assert _one_line_error(path, allowed_root=root) == (
            f"{path}: {fmt} playlists are refused when a data root is set (they read files "
            "from anywhere)")
        assert len(list(open_source(path, fps=5))) == 5  # allowed without a root
    frames = root / "frames"
    frames.mkdir()
    write_image(frames / "0.png", gray(0))
    make_video("root/frames/v.mp4", [0.0])
    (frames / "1.png").write_text("ffconcat version 1.0\nfile v.mp4\n")  # not an image
    with open_source(frames, fps=1) as src:
        assert len(list(src)) == 1
    assert src.stats.skipped_corrupt == 1
