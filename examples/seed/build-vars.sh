# Sourced by the pipeline's before_script: settings for the build.
export API_URL="https://api.${SERVER_ENV:-dev}.example.com"
# The stand-in npm of this example (the job image has a real one).
if [ -d "$PWD/bin" ]; then export PATH="$PWD/bin:$PATH"; fi
