<#
  Removes the wardwatch-agent service (run as Administrator). Config, spool and logs under
  %ProgramData%\wardwatch are kept; delete that directory to remove them too.
#>
param([string]$Venv = "$env:ProgramFiles\wardwatch\venv")
$ErrorActionPreference = "Stop"
& (Join-Path $Venv "Scripts\wardwatch-agent.exe") service uninstall
