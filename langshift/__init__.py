from langshift import platforms as _platforms

_platforms.quiet_absent_cuda()
