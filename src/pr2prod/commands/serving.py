"""Subcommands that build, serve and check the BentoML service."""

from __future__ import annotations

import argparse
import os
import sys

from pr2prod import paths
from pr2prod.commands import arg, command


@command("bento", "build the BentoML bento serving the pipeline's model")
def bento(_: argparse.Namespace) -> int:
    from pr2prod.release.bento import build_bento
    from pr2prod.release.compile import describe_inference
    from pr2prod.schema import load_schema
    from pr2prod.settings import load_settings

    settings, schema = load_settings(), load_schema(paths.SCHEMA)
    info = build_bento(settings, schema)
    model_state = "stored" if info.model_created else "already stored"
    bento_state = "built" if info.bento_created else "already built (nothing changed)"
    print(f"bento: {describe_inference(info.inference)}")
    print(f"bento: model {info.model_tag} {model_state}; bento {info.bento_tag} {bento_state}")
    return 0


@command(
    "serve",
    "serve the built bento locally",
    arg("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
    arg("--port", type=int, default=3000),
)
def serve(args: argparse.Namespace) -> int:
    from pr2prod.release.bento import built_bento_tag

    tag = built_bento_tag()
    print(f"serve: {tag} on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    command_line = ["bentoml", "serve", tag, "--host", args.host, "--port", str(args.port)]
    os.execvp(command_line[0], command_line)  # the server replaces this process: signals go to it


@command(
    "image",
    "build the bento's container image with Docker or Podman",
    arg("--image", help="image name:tag (default: the bento tag)"),
    arg(
        "--context-only",
        action="store_true",
        help="only write the build context (the bento and the Containerfile), build nothing",
    ),
)
def image(args: argparse.Namespace) -> int:
    from pr2prod.release.bento import built_bento_tag, expected_tags
    from pr2prod.release.image import (
        IMAGE_RECORD,
        build_image,
        image_labels,
        write_image_context,
    )

    tag = built_bento_tag()
    labels = image_labels(tag, expected_tags()[0])
    if args.context_only:
        containerfile = write_image_context(tag, paths.IMAGE_CONTEXT, labels)
        print(
            f"image: wrote the build context of {tag} to {paths.IMAGE_CONTEXT}/ "
            f"(bento/ and {containerfile.name}); build it with: docker build "
            f"--tag <name:tag> {paths.IMAGE_CONTEXT}"
        )
        return 0
    built = build_image(tag, args.image or tag, labels)
    print(
        f"image: built {built.reference} ({built.id[:12]}) with {built.builder} on {built.base}; "
        f"size {built.size_bytes / 1e6:.0f} MB; recorded in {IMAGE_RECORD}"
    )
    return 0


@command(
    "smoke",
    "check a running service, or an image in a container: ready, golden rows as evaluated",
    arg("--url", default="http://127.0.0.1:3000", help="the service's base URL"),
    arg(
        "--image",
        nargs="?",
        const="",
        help="start this image in a container and check it instead (no value: the image "
        "`make image` built last)",
    ),
    arg("--timeout", type=float, default=120, help="seconds to wait until it is ready"),
)
def smoke(args: argparse.Namespace) -> int:
    from pr2prod.release.smoke import smoke_test

    if args.image is None:
        passed, summary = smoke_test(args.url, timeout=args.timeout)
    else:
        from pr2prod.release.container import smoke_test_image

        builder, reference = _image_to_smoke(args.image)
        passed, summary = smoke_test_image(builder, reference, timeout=args.timeout)
    print(summary, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else 1


def _image_to_smoke(reference: str) -> tuple[str, str]:
    """(builder, reference): the recorded image's builder when it is that image."""
    from pr2prod.errors import Pr2prodError
    from pr2prod.release.image import IMAGE_RECORD, choose_builder, recorded_image

    recorded = recorded_image()
    if not reference:
        if recorded is None:
            raise Pr2prodError(
                f"no image named and none recorded in {IMAGE_RECORD}",
                hint="build one with `make image`, or name it: `make smoke-image IMAGE=name:tag`",
            )
        return recorded.builder, recorded.reference
    if recorded is not None and recorded.reference == reference:
        return recorded.builder, reference
    return choose_builder(), reference
