// Package deploy holds what it takes to run the node plugin: the Kubernetes
// manifests under kubernetes/ (and, for the plugin without sidecars, the
// overlay overlays/builtin-registration with its component
// components/builtin-registration), and (with the Dockerfile and the
// Makefile's image-binary target at the repository root) the image build. It
// has no code; its tests keep the manifests, the image build and the plugin's
// flags and parameters in step. See README.md.
package deploy
