# Sourced by the GPU scripts from the repository root: the Vulkan loader and GL dispatch that
# NVIDIA's Vulkan ICD needs (from the .deb files carried in .gpu/ when the machine lacks them),
# and the NVIDIA ICD for wgpu.
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ldconfig -p | grep -q libGLdispatch; then
    for f in .gpu/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
    ldconfig
fi
nv=/usr/local/nvidia/share
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -f $nv/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json VK_ICD_FILENAMES=$nv/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
